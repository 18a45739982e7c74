"""File contracts that both sides read: the exporters that write a format and the runtimes that open it
(GGUF's header walk, ONNX's input / output names). A leaf: imports only roots_edge.errors."""
