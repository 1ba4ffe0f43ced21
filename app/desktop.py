"""Cantus without a browser: ``python launch.py --desktop`` or ``python -m app.desktop``.

Records a hum from the default (or ``--input``) microphone with a countdown and a level meter, generates, and plays
the stream through the speakers (``--output``) as it arrives; the clip is saved to the library too. ``--no-hum``
skips recording; ``--list-devices`` lists audio devices. ``--jam`` plays endless music instead (``engine.Jam``) that
follows what is typed (a new prompt, ``bpm 120``, ``key A minor``, ``keep``, ``quit``) and, every 2 s, the
microphone's last seconds of humming. Without PortAudio or without a device, one sentence says
what to install or plug in.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from engine import Cantus, GenerationError, Request, Segment, Settings

from .library import ClipLibrary

RATE = 24_000


class DeviceError(RuntimeError):
    pass


def _sd():
    try:
        import sounddevice as sd
    except OSError:
        raise DeviceError("audio needs the PortAudio library: sudo apt-get install libportaudio2") from None
    except ImportError:
        raise DeviceError("audio needs the sounddevice package: pip install -r requirements.txt") from None
    return sd


def _device(sd, which: str | None, kind: str):
    try:
        devices = sd.query_devices()
    except Exception as e:  # PortAudio errors are plain Exceptions
        raise DeviceError(f"cannot list audio devices ({e}); is a sound card present?") from None
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [i for i, d in enumerate(devices) if d[key] > 0]
    if not usable:
        raise DeviceError(f"no audio {kind} device found: plug in a {'microphone' if kind == 'input' else 'speaker or headphones'}")
    if which is None:
        return None
    try:
        i = int(which)
    except ValueError:
        matches = [j for j in usable if which.lower() in devices[j]["name"].lower()]
        if not matches:
            raise DeviceError(f"no {kind} device named like {which!r}; see --list-devices") from None
        return matches[0]
    if i not in usable:
        raise DeviceError(f"device {i} has no {kind}; see --list-devices")
    return i


def record(seconds: float, device=None, out=sys.stderr) -> tuple[np.ndarray, int]:
    sd = _sd()
    dev = _device(sd, device, "input")
    for n in (3, 2, 1):
        print(f"\rrecording in {n}…", end="", file=out, flush=True)
        time.sleep(1)
    frames, sr = [], 16_000

    def cb(indata, n, t, status):
        frames.append(indata[:, 0].copy())

    try:
        with sd.InputStream(samplerate=sr, channels=1, device=dev, callback=cb):
            t0 = time.time()
            while time.time() - t0 < seconds:
                level = float(np.sqrt(np.mean(frames[-1] ** 2))) if frames else 0.0
                db = 20 * np.log10(level + 1e-9)
                bar = "#" * int(np.clip((db + 60) / 2, 0, 30))
                print(f"\rhum now {seconds - (time.time() - t0):4.1f} s  [{bar:<30}]", end="", file=out, flush=True)
                time.sleep(0.05)
    except Exception as e:
        raise DeviceError(f"could not record from the microphone: {e}") from None
    print(file=out)
    return (np.concatenate(frames) if frames else np.zeros(0, np.float32)), sr


JAM_HELP = ("type a new prompt and Enter to change the music; 'bpm 120' / 'bpm auto', 'key A minor' / 'key auto', "
            "'hum on' / 'hum off', 'keep' (save the last minutes), 'quit'")


def jam_command(line: str) -> tuple[str, dict | None]:
    """A line typed during a desktop jam -> (what, Jam.set changes); what is "quit", "keep", "hum on", "hum off",
    "set" or "help". Raises ValueError with a sentence for a command it cannot read."""
    text = line.strip()
    word, _, rest = text.partition(" ")
    word, rest = word.lower(), rest.strip()
    if not text or word in ("help", "?"):
        return "help", None
    if word in ("quit", "exit", "stop") and not rest:
        return "quit", None
    if word == "keep" and not rest:
        return "keep", None
    if word == "hum" and rest in ("on", "off"):
        return f"hum {rest}", None
    if word == "bpm":
        if rest == "auto":
            return "set", {"bpm": None}
        try:
            return "set", {"bpm": float(rest)}
        except ValueError:
            raise ValueError(f"'bpm' takes a number or 'auto', not {rest!r}") from None
    if word == "key":
        return "set", {"key": None if rest == "auto" else rest}
    return "set", {"prompt": text}


def jam(a, sd, out_dev) -> int:
    """Play a jam through the speakers until 'quit' or Ctrl-C, following what is typed and hummed."""
    import queue
    import threading

    from engine import Jam, MelodyError, melody_from_audio, resample

    from .server import DEFAULT_LIBRARY
    engine = Cantus.load(a.assets)
    live = Jam(engine, a.prompt, seed=a.seed)
    mic, follow, lines = [], [not a.no_hum], queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in sys.stdin], daemon=True).start()

    def heard(indata, n, t, status):
        mic.append(indata[:, 0].copy())
        del mic[:-40]  # about 4 s of 0.1 s blocks

    def track():
        while True:
            time.sleep(2.0)
            x = np.concatenate(mic) if mic else np.zeros(0, np.float32)
            if follow[0] and len(x) > 16_000 * 3 and 20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-9) > -45:
                try:
                    live.set(melody=melody_from_audio(resample(x, 16_000, RATE), RATE).tokens)
                except (MelodyError, GenerationError):
                    pass
    print(f"jamming on {a.prompt!r}; {JAM_HELP}", file=sys.stderr)
    ins = sd.InputStream(samplerate=16_000, channels=1, blocksize=1_600, device=_device(sd, a.input, "input"),
                         callback=heard) if not a.no_hum else None
    threading.Thread(target=track, daemon=True).start()
    quit_ = [False]
    try:
        if ins is not None:
            ins.start()
        with sd.OutputStream(samplerate=RATE, channels=1, device=out_dev, dtype="float32") as stream:
            for chunk in live.stream(stop=lambda: quit_[0]):
                stream.write(chunk.reshape(-1, 1))
                while not lines.empty():
                    try:
                        what, changes = jam_command(lines.get())
                        if what == "quit":
                            quit_[0] = True
                        elif what == "keep":
                            audio, story = live.kept()
                            clip = ClipLibrary(DEFAULT_LIBRARY).save(audio, {
                                "prompt": " → ".join(s["prompt"] for s in story),
                                "story": story if len(story) > 1 else None, "seed": a.seed, "settings": {"jam": True}})
                            print(f"kept {len(audio) / RATE:.0f} s as {clip.id}", file=sys.stderr)
                        elif what.startswith("hum"):
                            follow[0] = what == "hum on"
                            if not follow[0]:
                                live.set(melody=None)
                        elif what == "help":
                            print(JAM_HELP, file=sys.stderr)
                        else:
                            live.set(**changes)
                            print(f"from the next chunk: {changes}", file=sys.stderr)
                    except (ValueError, GenerationError) as e:
                        print(f"{e} (the jam plays on)", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if ins is not None:
            ins.close()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.desktop", description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt", default="a calm folk tune on the flute")
    ap.add_argument("--seconds", type=float, default=6.0, help="how long to record the hum")
    ap.add_argument("--no-hum", action="store_true")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", help="input device (number or part of its name)")
    ap.add_argument("--output", help="output device (number or part of its name)")
    ap.add_argument("--list-devices", action="store_true")
    ap.add_argument("--jam", action="store_true", help="play endless music that follows what you type and hum")
    ap.add_argument("--assets", default="assets")
    a = ap.parse_args(argv)
    try:
        if a.list_devices:
            devices = _sd().query_devices()
            print(devices if len(devices) else "no audio devices found: plug in a microphone and speakers or headphones")
            return 0
        sd = _sd()
        out_dev = _device(sd, a.output, "output")
        if a.jam:
            return jam(a, sd, out_dev)
        from .server import DEFAULT_LIBRARY
        melody = None
        if not a.no_hum:
            audio, sr = record(a.seconds, a.input)
            melody = Cantus.melody_tokens(audio, sr)
        engine = Cantus.load(a.assets)
        req = Request([Segment(a.prompt, a.duration)], Settings(duration=a.duration, seed=a.seed).validate(), melody)
        parts = []
        with sd.OutputStream(samplerate=RATE, channels=1, device=out_dev, dtype="float32") as stream:
            for chunk in engine.generate_stream(req):
                stream.write(chunk.reshape(-1, 1))
                parts.append(chunk)
                print(f"\rplaying {sum(len(p) for p in parts) / RATE:5.1f} s", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        clip = ClipLibrary(DEFAULT_LIBRARY).save(np.concatenate(parts), {"prompt": a.prompt, "seed": a.seed,
                                                                           "settings": vars(req.settings)})
        print(f"saved as {clip.id} in {DEFAULT_LIBRARY}")
    except (DeviceError, GenerationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
