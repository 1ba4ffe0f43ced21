"""ONNX export of the models and onnxruntime sessions."""
