"""Every way modelexport makes inputs, in one package.

* ``from_signature``: for a model, from its forward signature and config
  (token ids, pixel values at the config's image size, audio features);
* ``from_spec_file``: from a JSON description (``--input-specs``);
* ``like_example``: new values shaped like an example (parity on a fresh input);
* ``for_graph``: numpy feeds for an ONNX file alone (profile, extract).
"""
