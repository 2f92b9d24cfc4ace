"""NVDEC decoding (PyNvVideoCodec): the same pictures as the CPU path, on the GPU.

The tests marked ``gpu`` need an NVIDIA GPU, its driver (libnvcuvid), torch with CUDA and
PyNvVideoCodec; elsewhere they are skipped with the reason the decoder gives.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from bzna_boxes import DecoderUnavailable, layout
from bzna_boxes.decode import CpuDecoder, NvdecDecoder, open_decoder
from bzna_boxes.torch import Loader

from bzna_samples import build_dataset, fixture_photographs, frame_image, open_dataset


def _why_not() -> str | None:
    try:
        NvdecDecoder()
    except DecoderUnavailable as exc:
        return str(exc)
    return None


UNAVAILABLE = _why_not()
needs_nvdec = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


def test_without_nvdec_the_error_says_what_is_missing():
    if UNAVAILABLE is None:
        pytest.skip("NVDEC works on this machine")
    with pytest.raises(DecoderUnavailable) as info:
        NvdecDecoder("cuda:0")
    message = str(info.value)
    assert "\n" not in message and message.startswith("NVDEC unavailable: ")
    assert any(word in message for word in ("PyNvVideoCodec", "torch", "GPU", "libnvcuvid"))
    with pytest.raises(DecoderUnavailable):
        open_decoder("cuda:0")


@pytest.fixture(scope="module")
def pictures():
    """(name, track, EncodedImage) of every fixture photograph and thumbnail."""
    out = []
    for name, _, encoded in fixture_photographs():
        out.append((name, layout.INPUT_TRACK, frame_image(encoded.image)))
        if encoded.thumbnail is not None:
            out.append((name, layout.THUMB_TRACK, frame_image(encoded.thumbnail)))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.gpu
@needs_nvdec
def test_nvdec_pictures_equal_the_cpu_ones(pictures):
    cpu, gpu_decoder = CpuDecoder(), NvdecDecoder("cuda:0", layout="HWC")
    for name, track, image in pictures:
        on_gpu = gpu_decoder.decode(image)
        assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8
        expected = cpu.decode(image)
        got = on_gpu.cpu().numpy()
        assert got.shape == expected.shape, (name, track)
        assert np.abs(got.astype(int) - expected).max() <= 2, (name, track)
        assert psnr(got, expected) >= 45.0, (name, track)


@pytest.mark.gpu
@needs_nvdec
def test_nvdec_decodes_the_same_yuv_as_ffmpeg(pictures):
    """H.265 decoding is exact: NVDEC's NV12 equals FFmpeg's planes sample for sample."""
    cpu, gpu_decoder = CpuDecoder(), NvdecDecoder()
    for name, track, image in pictures:
        frame = cpu.decode_frame(image)
        planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes]
        h, w = frame.height, frame.width
        uv = np.stack([planes[1][: h // 2, : w // 2], planes[2][: h // 2, : w // 2]], -1).reshape(h // 2, w)
        nv12 = gpu_decoder.decode_nv12(image).cpu().numpy()
        assert np.array_equal(nv12, np.concatenate([planes[0][:h, :w], uv])), (name, track)


@pytest.mark.gpu
@needs_nvdec
def test_layouts_threads_and_sessions(pictures):
    hwc, chw = NvdecDecoder(layout="HWC"), NvdecDecoder(layout="CHW")
    expected = [hwc.decode(image) for _, _, image in pictures]
    for (_, _, image), picture in zip(pictures, expected):
        assert torch.equal(chw.decode(image).permute(1, 2, 0), picture)
    sizes = {(image.frame_width, image.frame_height) for _, _, image in pictures}
    assert hwc.sessions_opened <= 1 + len(sizes)  # the check picture's 512x512 session is reused
    results: dict[int, list[torch.Tensor]] = {}

    def work(worker: int) -> None:
        results[worker] = [hwc.decode(image) for _, _, image in pictures * 3]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for pictures_of_thread in results.values():
        assert all(torch.equal(a, b) for a, b in zip(pictures_of_thread, expected * 3))
    assert hwc.sessions_opened <= 1 + 4 * len(sizes)  # sessions are taken back and reused, never one per picture


@pytest.mark.gpu
@needs_nvdec
def test_the_loader_batches_on_the_gpu(tmp_path):
    items = [(encoded, index, name) for index, (name, _, encoded) in enumerate(fixture_photographs())]
    dataset = open_dataset(build_dataset(tmp_path / "photos.bzna", items))
    assert isinstance(open_decoder("auto"), NvdecDecoder)
    on_gpu = list(Loader(dataset, batch_size=3, device="cuda", size=(224, 224)))
    on_cpu = list(Loader(dataset, batch_size=3, device="cpu", size=(224, 224)))
    assert [len(t) for _, t in on_gpu] == [3, 3, 2]
    for (gpu_images, gpu_targets), (cpu_images, cpu_targets) in zip(on_gpu, on_cpu):
        assert gpu_images.is_cuda and gpu_targets.is_cuda and gpu_images.shape[1:] == (3, 224, 224)
        assert torch.equal(gpu_targets.cpu(), cpu_targets)
        difference = (gpu_images.cpu().int() - cpu_images.int()).abs()
        assert difference.max() <= 3 and difference.float().mean() < 0.5  # CPU: resized in uint8, within 1 of float
