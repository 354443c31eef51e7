"""The AudioLDM mel frontend against librosa (an independent implementation), and WAV output."""
import numpy as np
import pytest
import soundfile as sf
import torch

from objaudio_rt.core.audio import MelConfig, load_wav, mel_basis, mel_spectrogram, save_wav
from objaudio_rt.core.errors import ObjaudioError

librosa = pytest.importorskip("librosa")


def test_mel_basis_matches_librosa():
    ours = mel_basis(MelConfig()).numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_log_mel_matches_librosa_pipeline():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size) + 0.2).astype(np.float32)
    ours = mel_spectrogram(torch.from_numpy(wave))[0].numpy()                        # (frames, 64)
    w = wave - wave.mean()
    w = 0.5 * w / (np.abs(w).max() + 1e-8)
    spec = np.abs(librosa.stft(w.astype(np.float64), n_fft=1024, hop_length=160, win_length=1024,
                               window="hann", center=True, pad_mode="reflect"))
    mel = librosa.feature.melspectrogram(S=spec, sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000,
                                         htk=False, norm="slaney", power=1.0)
    ref = np.log(np.clip(mel, 1e-5, None)).T
    assert ours.shape == ref.shape == (16000 * 2 // 160 + 1, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_frames_per_second():
    assert mel_spectrogram(torch.randn(16000 * 10 + 384)).shape[1] == 1003
    assert MelConfig().frames_per_second == 100


def test_bad_waveforms_are_refused():
    with pytest.raises(ObjaudioError, match="NaN"):
        mel_spectrogram(torch.tensor([0.0, float("nan")] * 1000))
    with pytest.raises(ObjaudioError, match="too short"):
        mel_spectrogram(torch.zeros(100))


def test_wav_round_trip_and_no_overwrite(tmp_path):
    wave = torch.sin(torch.linspace(0, 100, 16000))
    path = save_wav(tmp_path / "a.wav", wave)
    data, sr = sf.read(path, dtype="float32")
    assert sr == 16000 and data.dtype == np.float32
    np.testing.assert_array_equal(data, wave.numpy())
    with pytest.raises(ObjaudioError, match="already exists"):
        save_wav(tmp_path / "a.wav", wave)
    save_wav(tmp_path / "a.wav", wave * 0.5, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]          # no temporary left behind


def test_wav_refuses_nan_and_leaves_nothing(tmp_path):
    with pytest.raises(ObjaudioError, match="NaN"):
        save_wav(tmp_path / "b.wav", torch.tensor([0.0, float("inf")]))
    assert list(tmp_path.iterdir()) == []


def test_wav_into_missing_folder(tmp_path):
    with pytest.raises(ObjaudioError, match="does not exist"):
        save_wav(tmp_path / "nope" / "c.wav", torch.zeros(10))


def test_load_wav_resamples_to_16k(tmp_path):
    t = np.arange(44100) / 44100
    sf.write(tmp_path / "x.wav", np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, 1), 44100)
    wave = load_wav(tmp_path / "x.wav")
    assert wave.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1


def test_load_wav_corrupt(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ObjaudioError, match="cannot read audio"):
        load_wav(tmp_path / "bad.wav")


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resample_to_44_1_and_48_khz(rate):
    """audio.resample (libsoxr) against the analytic tone at the new rate: at most the error of
    scipy's polyphase resampler (what load_wav uses) on the same tone, away from the edges."""
    from scipy.signal import resample_poly

    from objaudio_rt.core.audio import resample

    t = np.arange(16000) / 16000
    x = (0.8 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 6500 * t)).astype(np.float32)
    y = resample(torch.from_numpy(x), 16000, rate)
    tr = np.arange(rate) / rate
    ref = 0.8 * np.sin(2 * np.pi * 1000 * tr) + 0.1 * np.sin(2 * np.pi * 6500 * tr)
    g = np.gcd(16000, rate)
    poly = resample_poly(x.astype(np.float64), rate // g, 16000 // g)
    edge = slice(rate // 10, -rate // 10)
    err, err_poly = np.abs(y - ref)[edge].max(), np.abs(poly - ref)[edge].max()
    assert y.dtype == np.float32 and y.shape == (rate,)
    assert err <= err_poly, f"soxr error {err:.2e} > polyphase {err_poly:.2e}"
    assert np.array_equal(resample(x, 16000, rate), y)                       # the same samples, the same result
    assert np.array_equal(resample(x, 16000, 16000), x)


def test_wav_at_another_rate_and_bad_rates(tmp_path):
    x = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.5
    path = save_wav(tmp_path / "a.wav", x, rate=48000)
    data, sr = sf.read(path, dtype="float32")
    assert sr == 48000 and data.shape == (48000,)
    for bad in (0, 7999, 192001, 44100.0, True):
        with pytest.raises(ObjaudioError, match="from 8000 to 192000 Hz"):
            save_wav(tmp_path / "b.wav", x, rate=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_a_loop_is_resampled_as_a_loop_and_carries_its_loop_points(tmp_path):
    """A loop resampled to 48 kHz equals one period of the repeated sound resampled (no click at its seam,
    which plain resampling leaves: the filter sees silence past each end); its WAV has a smpl chunk with
    one forward loop over every sample, and reads back as usual."""
    import struct

    import soundfile as sf

    from objaudio_rt.core.audio import resample, wav_bytes

    rng = np.random.default_rng(0)
    spec = np.fft.rfft(rng.standard_normal(16000))
    spec[np.fft.rfftfreq(16000, 1 / 16000) > 6000] = 0
    loop = (0.5 * np.fft.irfft(spec, 16000) / np.abs(np.fft.irfft(spec, 16000)).max()).astype(np.float32)
    got = resample(loop, 16000, 48000, loop=True)
    middle = resample(np.tile(loop, 5), 16000, 48000)[2 * 48000: 3 * 48000]
    assert got.shape == (48000,)
    np.testing.assert_allclose(got, middle, atol=1e-4 * np.abs(middle).max())
    plain = resample(loop, 16000, 48000)
    assert np.abs(plain[:50] - middle[:50]).max() > 100 * np.abs(got[:50] - middle[:50]).max()   # the seam plain resampling breaks

    data = wav_bytes(loop, 16000, "pcm16", rate=44100, loop=True)
    at = data.index(b"smpl")
    (size,) = struct.unpack("<I", data[at + 4: at + 8])
    fields = struct.unpack("<15I", data[at + 8: at + 8 + size])
    assert size == 60 and fields[7] == 1 and fields[9:12] == (0, 0, 0) and fields[12] == 44100 - 1
    (tmp_path / "loop.wav").write_bytes(data)
    back, sr = sf.read(tmp_path / "loop.wav", dtype="float32")
    assert sr == 44100 and back.shape == (44100,)
    assert b"smpl" not in wav_bytes(loop, 16000, "float")
