"""Validation: one library for the export's self-check and the ``validate`` command.

``file_checks`` (checker and ONNX Runtime load), ``ownership`` (parameter
readers on their owners) and ``parity`` (ONNX Runtime against PyTorch on a
fresh input) are asked by both: the export through ``self_check`` before it
may say "ok", ``validate`` through ``saved_file.validate_file``, which adds
the checks that need only the file and its sidecar (``structure``: tags,
schema, convex module regions) and, on request, ``per_module``'s
comparison of every module call.  ``figures`` holds the tag-quality figures
a report carries.
"""
