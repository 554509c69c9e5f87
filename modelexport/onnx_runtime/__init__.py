"""Everything modelexport asks of ONNX Runtime: sessions made in one place
(``sessions``), intermediate values exposed (``values``), and the one rule by
which an ONNX Runtime output is compared with PyTorch's (``comparison``)."""
