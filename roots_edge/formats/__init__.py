"""File contracts that both sides read: the exporters that write a format and the runtimes that open it
(GGUF's header walk, ONNX's input / output names, an artifact's manifest). Imports only roots_edge.core."""
