"""Tools that work on a tagged ONNX file after export.

Each module answers one question a user brings to an exported file: what is
in it (:mod:`analyze`), is it consistent (:mod:`validate`), where does it
disagree with PyTorch (:mod:`per_module`), what changed (:mod:`compare`),
give me one block (:mod:`extract`), where does the time go (:mod:`profile`),
and put the tags back after an optimiser (:mod:`retag`).  They share one
reader (:mod:`module_view`) that also understands plain ``torch.onnx`` files.
"""
