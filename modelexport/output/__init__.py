"""Writing what an export produces: the ONNX file (weights streamed, ``onnx_payload``),
atomic files and staging (``files``), the JSON sidecar (``sidecar``) and the
markdown report (``markdown_report``).  Nothing is left half-written."""
