"""Processes forked after decoding threads have run (DataLoader workers after a Loader epoch) start and decode.

FFmpeg's swscale contexts own worker threads; a fork keeps none of them, and freeing such a
context in the child waits for them forever. Each scenario runs in its own process (its own
session, killed whole if it does not finish): a hang fails the test through the timeout, a
safety net only, since the scenario either finishes in a second or never does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bzna_samples import REPO, build_dataset, fixture_photographs

pytest.importorskip("av", reason="CPU decoding needs PyAV")

SAFETY_TIMEOUT = 300


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    items = [(encoded, k, f"{k}_{name}") for k, (name, _, encoded) in enumerate(fixture_photographs() * 2)]
    return build_dataset(tmp_path_factory.mktemp("fork") / "photos.bzna", items)


def run_scenario(code: str, *args: str) -> str:
    """Run ``code`` in a new Python process of its own session; its stdout. The process group is
    killed when it fails or passes the safety timeout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=SAFETY_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the scenario hung (killed after {SAFETY_TIMEOUT} s)")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, err
    return out


def test_a_fork_after_a_decoder_ran_on_other_threads_decodes_in_the_child(path):
    out = run_scenario(
        """
        import os, sys, threading
        from bzna_boxes import Dataset
        from bzna_boxes.decode import CpuDecoder

        ds = Dataset(sys.argv[1])
        decoder = CpuDecoder()
        decoded, release = threading.Event(), threading.Event()

        def work():
            decoder.decode(ds[0].image())
            decoded.set()
            release.wait()  # alive, idle, holding its contexts, as a pool's thread between batches

        worker = threading.Thread(target=work)
        worker.start()
        decoded.wait()
        pid = os.fork()
        if pid == 0:
            decoder.decode(ds[1].image())
            os._exit(0)
        release.set()
        worker.join()
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        str(path),
    )
    assert out.split() == ["0"]


def test_dataloader_workers_forked_after_a_loader_epoch(path):
    pytest.importorskip("torch")
    out = run_scenario(
        """
        import sys
        from torch.utils.data import DataLoader
        from bzna_boxes import Dataset
        from bzna_boxes.torch import ImageDataset, Loader

        ds = Dataset(sys.argv[1])
        loader = Loader(ds, batch_size=4, device="cpu", size=32)
        for _ in loader:  # its decoding threads convert with swscale, then wait for the next epoch
            pass
        corner = lambda image: image[:, :8, :8].contiguous()
        workers = DataLoader(ImageDataset(ds, transform=corner), batch_size=4, num_workers=2, multiprocessing_context="fork")
        print(*sorted(t for _, targets in workers for t in targets.tolist()))
        """,
        str(path),
    )
    assert out.split() == [str(k) for k in range(2 * len(fixture_photographs()))]
