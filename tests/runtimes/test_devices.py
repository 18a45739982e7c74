import pytest

from roots_edge.runtimes.devices import DeviceError, choose, place


def test_auto_prefers_gpu_then_apple_then_cpu():
    assert choose("onnxruntime", "auto", {"cpu": "CPUExecutionProvider"}).device == "cpu"
    offered = {"cpu": "CPU", "gpu": "GPU.0"}
    assert choose("openvino", "auto", offered).setting == "GPU.0"
    p = choose("llamacpp", "auto", {"cpu": "n_gpu_layers=0", "apple": "n_gpu_layers=-1"})
    assert (p.device, p.setting) == ("apple", "n_gpu_layers=-1")


def test_absent_device_lists_what_is_present():
    with pytest.raises(DeviceError, match=r"'gpu' is not available to onnxruntime.*present: cpu \(CPUExecutionProvider\)"):
        choose("onnxruntime", "gpu", {"cpu": "CPUExecutionProvider"})
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        choose("torch", "tpu", {"cpu": "cpu"})


def test_this_machine_offers_cpu_everywhere():
    for backend in ("onnxruntime", "openvino", "llamacpp", "torch"):
        assert place(backend, "cpu").device == "cpu"
