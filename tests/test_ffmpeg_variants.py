"""Files from FFmpeg's MP4-family muxers in many variants, made at test time with PyAV.

Muxers (mp4, mov, ipod, ismv, f4v, psp), video and audio codecs with their own sample entries
(vp09, av01, FFV1, png, jpeg, apch, rle, raw, fLaC, Opus, alac, ac-3, ec-3, .mp3, ipcm, fpcm, sowt,
in24, ulaw, ima4, ...), and movflags (hint tracks, metadata keys, fragments of every kind, global
sidx, timecode tracks): each must round-trip byte for byte, and our sample index must equal the
packets FFmpeg's demuxer reads.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV makes the files and reads the reference packets")

import bzna_boxes  # noqa: E402
from bzna_boxes import BoxError, Boxes  # noqa: E402
from bzna_boxes.cli import main  # noqa: E402

from test_index import assert_matches_packets, pyav_packets  # noqa: E402

WIDTH, HEIGHT, FRAMES = 64, 48, 8


def _frames(pix_fmt: str):
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    for i in range(FRAMES):
        rgb = np.stack([(x * 4 + i * 8) % 256, (y * 5 + i * 3) % 256, (x + y + i * 12) % 256], -1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame if pix_fmt == "rgb24" else frame.reformat(format=pix_fmt)
        frame.pts, frame.time_base = i, Fraction(1, 10)
        yield frame


def _sound(stream):
    context = stream.codec_context
    resampler = av.AudioResampler(format=context.format.name, layout=context.layout.name, rate=context.sample_rate)
    for i in range(6):
        t = (np.arange(1024) + 1024 * i) / 48000
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None].repeat(2, 0), format="fltp", layout="stereo")
        frame.rate, frame.pts = 48000, 1024 * i
        yield from resampler.resample(frame)


def make(path: Path, muxer: str, video: str | None, audio: str | None, options: dict | None = None, pix_fmt: str = "yuv420p", metadata: dict | None = None) -> Path:
    with av.open(str(path), "w", format=muxer, options=options or {}) as out:
        out.metadata.update(metadata or {})
        streams = []
        if video:
            stream = out.add_stream(video, rate=10)
            stream.width, stream.height, stream.pix_fmt, stream.gop_size = WIDTH, HEIGHT, pix_fmt, 4
            if video in ("libx264", "libx265"):
                stream.codec_context.max_b_frames = 2
                stream.options = {"x265-params": "log-level=error"} if video == "libx265" else {}
            streams.append((stream, _frames(pix_fmt)))
        if audio:
            stream = out.add_stream(audio, rate=48000)
            stream.layout = "stereo"
            streams.append((stream, None))
        for stream, frames in streams:
            for frame in frames if frames is not None else _sound(stream):
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


VARIANTS = {
    # video sample entries
    "vp09.mp4": ("mp4", "libvpx-vp9", None, {}, "yuv420p"),
    "av01.mp4": ("mp4", "libsvtav1", None, {}, "yuv420p"),
    "ffv1.mp4": ("mp4", "ffv1", None, {}, "yuv420p"),
    "mp4v-mjpeg.mp4": ("mp4", "mjpeg", None, {}, "yuvj420p"),
    "png.mov": ("mov", "png", None, {}, "rgb24"),
    "apch.mov": ("mov", "prores_ks", None, {}, "yuv422p10le"),
    "rle.mov": ("mov", "qtrle", None, {}, "rgb24"),
    "raw.mov": ("mov", "rawvideo", None, {}, "yuv420p"),
    "m2v1.mov": ("mov", "mpeg2video", None, {}, "yuv420p"),
    "avc-444.mp4": ("mp4", "libx264", None, {}, "yuv444p"),
    "hevc-10bit.mov": ("mov", "libx265", None, {}, "yuv420p10le"),
    # audio sample entries
    "fLaC.mp4": ("mp4", None, "flac", {"strict": "-2"}, None),
    "Opus.mp4": ("mp4", None, "libopus", {}, None),
    "alac.m4a": ("ipod", None, "alac", {}, None),
    "ac-3.mp4": ("mp4", None, "ac3", {}, None),
    "ec-3.mov": ("mov", None, "eac3", {}, None),
    "mp3.mov": ("mov", None, "libmp3lame", {}, None),
    "ipcm.mp4": ("mp4", None, "pcm_s16le", {}, None),
    "fpcm.mp4": ("mp4", None, "pcm_f32le", {}, None),
    "in24.mov": ("mov", None, "pcm_s24be", {}, None),
    "ulaw.mov": ("mov", None, "pcm_mulaw", {}, None),
    "ima4.mov": ("mov", None, "adpcm_ima_qt", {}, None),
    # muxers and movflags, H.264 + AAC
    "ismv.ismv": ("ismv", "libx264", "aac", {}, "yuv420p"),
    "f4v.f4v": ("f4v", "libx264", "aac", {}, "yuv420p"),
    "psp.mp4": ("psp", "libx264", "aac", {}, "yuv420p"),
    "m4v.m4v": ("ipod", "libx264", "aac", {}, "yuv420p"),
    "rtp-hint.mp4": ("mp4", "libx264", "aac", {"movflags": "faststart+rtphint"}, "yuv420p"),
    "metadata-keys.mov": ("mov", "libx264", "aac", {"movflags": "use_metadata_tags"}, "yuv420p"),
    "timecode.mov": ("mov", "libx264", None, {"write_tmcd": "1"}, "yuv420p"),
    "negative-cts.mp4": ("mp4", "libx264", "aac", {"movflags": "negative_cts_offsets"}, "yuv420p"),
    "colr-gama.mov": ("mov", "libx264", None, {"movflags": "write_colr+write_gama"}, "yuv420p"),
    "isml.mp4": ("mp4", "libx264", "aac", {"movflags": "isml+frag_keyframe"}, "yuv420p"),
    "cmaf.mp4": ("mp4", "libx264", "aac", {"movflags": "cmaf+frag_keyframe+empty_moov"}, "yuv420p"),
    "dash.mp4": ("mp4", "libx264", "aac", {"movflags": "dash+frag_keyframe+empty_moov"}, "yuv420p"),
    "separate-moof.mp4": ("mp4", "libx264", "aac", {"movflags": "frag_keyframe+empty_moov+separate_moof"}, "yuv420p"),
    "frag-every-frame.mp4": ("mp4", "libx265", None, {"movflags": "frag_every_frame+empty_moov"}, "yuv420p"),
    "skip-trailer.mp4": ("mp4", "libx264", "aac", {"movflags": "skip_trailer+frag_keyframe+empty_moov"}, "yuv420p"),
    "delay-moov.mp4": ("mp4", "libx264", "aac", {"movflags": "delay_moov+frag_keyframe"}, "yuv420p"),
    "hybrid-fragmented.mp4": ("mp4", "libx264", "aac", {"movflags": "hybrid_fragmented"}, "yuv420p"),
    "global-sidx.mp4": ("mp4", "libx264", "aac", {"movflags": "frag_keyframe+empty_moov+global_sidx+omit_tfhd_offset"}, "yuv420p"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ffmpeg")


def variant(folder: Path, name: str) -> Path:
    muxer, video, audio, options, pix_fmt = VARIANTS[name]
    try:
        return make(folder / name, muxer, video, audio, options, pix_fmt or "yuv420p", {"title": "t é"})
    except (av.FFmpegError, ValueError) as exc:  # an FFmpeg build without this encoder
        pytest.skip(f"this FFmpeg cannot write {name}: {exc}")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_round_trip_and_index_equal_ffmpeg(folder: Path, name: str, capsys):
    path = variant(folder, name)
    data = path.read_bytes()
    assert Boxes.build(Boxes.parse(data)) == data
    packets = pyav_packets(path)
    with av.open(str(path)) as container:
        frames = {stream.id: stream.frames for stream in container.streams}
    with bzna_boxes.open(path) as file:
        assert set(packets) <= {track.track_id for track in file.tracks}
        for track in file.tracks:
            if track.handler == "hint":  # FFmpeg's demuxer leaves out a hint track's last sample
                assert len(track) == frames[track.track_id]
                ours = list(zip(track.offsets.tolist(), track.sizes.tolist()))
                assert ours[: len(packets[track.track_id])] == packets[track.track_id]
            elif track.track_id in packets:
                assert_matches_packets(track, packets[track.track_id])
    assert main(["inspect", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)


def test_global_sidx_with_absolute_offsets_is_refused_like_ffmpeg_fails(folder: Path):
    """FFmpeg's global_sidx shifts the fragments after writing them but not tfhd's absolute base_data_offset.

    The file still round-trips byte for byte; its samples point into the moof, which the index
    reports (FFmpeg's own decoder fails on those bytes).
    """
    path = make(folder / "stale-offsets.mp4", "mp4", "libx264", None, {"movflags": "frag_keyframe+empty_moov+global_sidx"})
    data = path.read_bytes()
    assert Boxes.build(Boxes.parse(data)) == data
    with pytest.raises(BoxError, match=r"moof/traf.*overlaps the metadata box"):
        bzna_boxes.open(path).tracks
