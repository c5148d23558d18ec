from __future__ import annotations

from search.gpu import visible_gpus, worker_envs


def test_one_worker_per_gpu_by_default_and_pinned() -> None:
    assert worker_envs(None, ["0", "1"]) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(4, ["2", "3"])] == ["2", "3", "2", "3"]


def test_cpu_only_hides_gpus_from_workers() -> None:
    assert worker_envs(None, []) == [{"CUDA_VISIBLE_DEVICES": "-1"}]
    assert len(worker_envs(3, [])) == 3


def test_visible_gpus_honours_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,3"}) == ["1", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
