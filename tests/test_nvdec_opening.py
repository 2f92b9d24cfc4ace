"""Opening NVDEC, checked on the CPU: the embedded test picture, the failures it turns into
DecoderUnavailable, and session reuse across threads. PyNvVideoCodec and CUDA are replaced by
small stand-ins here (no GPU exists on this machine); tests/test_nvdec.py runs the real ones."""

from __future__ import annotations

import threading
import types

import av
import numpy as np
import pytest
import torch

from bzna_boxes import DecoderUnavailable
from bzna_boxes.decode import nvdec


def test_the_check_picture_decodes_to_the_stated_samples_with_ffmpeg():
    context = av.CodecContext.create("hevc", "r")
    frames = context.decode(av.Packet(nvdec.CHECK_PICTURE)) + context.decode(None)
    assert len(frames) == 1 and (frames[0].width, frames[0].height) == (nvdec.CHECK_SIZE, nvdec.CHECK_SIZE)
    plane = frames[0].planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    assert {at: int(luma[at]) for at in nvdec.CHECK_LUMA} == nvdec.CHECK_LUMA
    assert len(nvdec.CHECK_PICTURE) < 1000


class FakeStream:
    cuda_stream = 0


def fake_nvc(create=None, decode=None):
    """A PyNvVideoCodec stand-in whose CreateDecoder and Decode do what the test says."""

    class Decoder:
        def Decode(self, packet):
            return decode(packet)

    def create_decoder(**kwargs):
        if create is not None:
            create(**kwargs)
        return Decoder()

    class PacketData:
        bsl = 0

    return types.SimpleNamespace(
        CreateDecoder=create_decoder,
        PacketData=PacketData,
        cudaVideoCodec=types.SimpleNamespace(HEVC=8),
        DisplayDecodeLatencyType=types.SimpleNamespace(ZERO=0),
        VideoPacketFlag=types.SimpleNamespace(ENDOFPICTURE=1),
    )


@pytest.fixture
def no_cuda_streams(monkeypatch):
    import contextlib

    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())


def decoded(y: dict) -> list:
    """One 'frame' exporting an NV12 surface whose luma has the given samples."""
    nv12 = np.zeros((nvdec.CHECK_SIZE * 3 // 2, nvdec.CHECK_SIZE), np.uint8)
    for at, value in y.items():
        nv12[at] = value
    return [nv12]


def test_a_gpu_that_cannot_decode_is_refused_when_the_decoder_opens(no_cuda_streams, monkeypatch):
    monkeypatch.setattr(torch, "from_dlpack", lambda frame: torch.from_numpy(frame))

    def no_engines(**kwargs):
        raise RuntimeError("cuvidCreateDecoder failed: CUDA_ERROR_NO_DEVICE\nmore text")

    with pytest.raises(DecoderUnavailable, match=r"test picture did not decode on cuda:0: NVDEC could not open a decoder for 512x512 pictures on cuda:0: cuvidCreateDecoder failed: CUDA_ERROR_NO_DEVICE$"):
        nvdec.check_decoding(fake_nvc(create=no_engines), 0)

    def fails_at_decode(packet):
        raise RuntimeError("Decode Error occurred for picture 0")

    with pytest.raises(DecoderUnavailable, match="did not decode on cuda:1: Decode Error occurred"):
        nvdec.check_decoding(fake_nvc(decode=fails_at_decode), 1)
    with pytest.raises(DecoderUnavailable, match="0 pictures out of one"):
        nvdec.check_decoding(fake_nvc(decode=lambda packet: []), 0)
    with pytest.raises(DecoderUnavailable, match="wrong samples"):
        nvdec.check_decoding(fake_nvc(decode=lambda packet: decoded({(0, 0): 16, (170, 170): 75})), 0)
    sizes = []
    session = nvdec.check_decoding(fake_nvc(decode=lambda packet: sizes.append(packet.bsl) or decoded(nvdec.CHECK_LUMA)), 0)
    assert session.usable and session.size == (512, 512) and sizes == [len(nvdec.CHECK_PICTURE)]


def test_sessions_are_reused_across_threads(no_cuda_streams):
    decoder = object.__new__(nvdec.NvdecDecoder)  # the pool alone: no GPU to open a real one on
    decoder._nvc, decoder.gpu, decoder.max_sessions = fake_nvc(decode=lambda packet: []), 0, 8
    decoder._lock, decoder._idle, decoder.sessions_opened = threading.Lock(), __import__("collections").deque(), 0
    barrier = threading.Barrier(3)

    def work() -> None:
        for round_ in range(20):
            session = decoder._take(512, 512)
            if round_ == 0:
                barrier.wait()  # three sessions in use at once, at the start
            decoder._give_back(session)
        decoder._give_back(decoder._take(1024, 512))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert decoder.sessions_opened <= 6  # not 60: at most one per thread and size
    assert decoder.sessions_opened >= 3 + 1
    broken = decoder._take(512, 512)
    broken.usable = False
    decoder._give_back(broken)  # a flushed or failed session is dropped
    assert broken not in decoder._idle


def test_creating_a_session_mid_run_fails_with_decoder_unavailable(no_cuda_streams):
    def busy(**kwargs):
        raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY")

    with pytest.raises(DecoderUnavailable, match="1024x512 pictures on cuda:3: CUDA_ERROR_OUT_OF_MEMORY"):
        nvdec._Session(fake_nvc(create=busy), 3, 1024, 512)
