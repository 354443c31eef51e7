"""Output files: never onto an input or each other, all or none, umask modes, stale temporaries,
deterministic WAV bytes in float and 16-bit PCM."""
import errno
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import soundfile as sf

from objaudio_rt.frontends import outputs
from objaudio_rt.core.audio import save_wav, wav_bytes
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.frontends.outputs import PART, check_outputs, write_together


def test_an_output_is_never_an_input_even_through_a_hard_link(tmp_path):
    src = tmp_path / "scene.png"
    src.write_bytes(b"input")
    os.link(src, tmp_path / "alias.png")
    (tmp_path / "sym.png").symlink_to(src)
    for out in (src, tmp_path / "alias.png", tmp_path / "sym.png", tmp_path / "." / "scene.png"):
        with pytest.raises(ObjaudioError, match="is the input"):
            check_outputs([out], [src], force=True)
    with pytest.raises(ObjaudioError, match="same file"):
        check_outputs([tmp_path / "a.wav", tmp_path / "." / "a.wav"], [], force=True)
    with pytest.raises(ObjaudioError, match="is a folder"):
        check_outputs([tmp_path], [], force=True)


def test_all_or_nothing_when_the_disk_fills(tmp_path, monkeypatch):
    real = outputs._write_file

    def full_on_second(tmp, data, mode):
        if tmp.name.startswith(".b.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tmp, data, mode)

    monkeypatch.setattr(outputs, "_write_file", full_on_second)
    with pytest.raises(ObjaudioError, match="disk is full") as exc:
        write_together([(tmp_path / "a.wav", b"x"), (tmp_path / "b.png", b"y")])
    assert "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_umask_mode_and_force_keeps_the_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_wav(tmp_path / "a.wav", np.zeros(16, np.float32))
        assert oct(path.stat().st_mode & 0o777) == oct(0o644)
        path.chmod(0o640)
        save_wav(path, np.ones(16, np.float32) * 0.1, force=True)
        assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(old)


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.wav.{int(dead.stdout)}{PART}"
    stale.write_bytes(b"half")
    save_wav(tmp_path / "a.wav", np.zeros(16, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_wav_bytes_are_deterministic_and_readable(tmp_path):
    x = np.sin(np.linspace(0, 50, 1601)).astype(np.float32) * 0.9
    a, b = save_wav(tmp_path / "a.wav", x), save_wav(tmp_path / "b.wav", x)
    assert a.read_bytes() == b.read_bytes()
    data, sr = sf.read(a, dtype="float32")
    assert sr == 16000 and np.array_equal(data, x)
    assert sf.info(str(a)).subtype == "FLOAT"
    p = save_wav(tmp_path / "p.wav", x, fmt="pcm16")
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, x.size)
        pcm = np.frombuffer(w.readframes(x.size), "<i2")
    assert np.abs(pcm / 32767.0 - x).max() <= 0.5 / 32767 + 1e-7
    assert save_wav(tmp_path / "q.wav", x, fmt="pcm16").read_bytes() == p.read_bytes()
    with pytest.raises(ObjaudioError, match="no samples"):
        wav_bytes(np.zeros(0, np.float32))
    with pytest.raises(ObjaudioError, match="unknown WAV format"):
        wav_bytes(x, fmt="mp3")
