#!/usr/bin/env python3
"""Mouth-to-ear tap for `chaincall bench audio`'s baresip call, on a JACK server.

Usage: jack_tap.py SERVER SPEECH.wav HEARD.wav SECONDS MIC_PORT[,MIC_PORT…] SPEAKER_PORT

Waits until the caller's microphone ports and the callee's speaker port exist on SERVER (the
baresips open them when the call comes up), connects them to this client, then from one and
the same process cycle on plays SPEECH.wav (16-bit mono, the server's rate) into every
microphone port and records the speaker port for SECONDS. Both run on the server's sample
clock, so where the speech starts in HEARD.wav is the mouth-to-ear delay, to the sample.
Prints `started` when the speech starts; exits non-zero with the reason on stderr on failure
(no server, ports that never appear, a rate mismatch).
"""
import sys
import threading
import time
import wave

import jack
import numpy as np

PORTS_TIMEOUT_S = 30


def read_speech(path, rate):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != rate:
            sys.exit(f"{path}: need 16-bit mono PCM at {rate} Hz")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    server, speech_path, heard_path, seconds, mics, speaker = sys.argv[1:]
    client = jack.Client("chaincall_tap", servername=server, no_start_server=True)
    rate = client.samplerate
    speech = read_speech(speech_path, rate)
    total = int(float(seconds) * rate)
    heard = np.zeros(total, dtype=np.float32)
    mic_out = client.outports.register("mic")
    speaker_in = client.inports.register("speaker")
    state = {"running": False, "pos": 0}
    done = threading.Event()

    @client.set_process_callback
    def process(frames):
        out = mic_out.get_array()
        if not state["running"]:
            out.fill(0)
            return
        pos = state["pos"]
        chunk = speech[pos : pos + frames]
        out[: len(chunk)] = chunk
        out[len(chunk) :] = 0
        got = speaker_in.get_array()
        n = min(frames, total - pos)
        if n > 0:
            heard[pos : pos + n] = got[:n]
        state["pos"] = pos + frames
        if state["pos"] >= total:
            state["running"] = False
            done.set()

    with client:
        wanted = mics.split(",") + [speaker]
        deadline = time.monotonic() + PORTS_TIMEOUT_S
        while True:
            names = {p.name for p in client.get_ports()}
            if all(w in names for w in wanted):
                break
            if time.monotonic() > deadline:
                missing = [w for w in wanted if w not in names]
                sys.exit(f"JACK ports never appeared: {missing} (have {sorted(names)})")
            time.sleep(0.01)
        for mic in mics.split(","):
            client.connect(mic_out, mic)
        client.connect(speaker, speaker_in)
        state["running"] = True
        print("started", flush=True)
        if not done.wait(float(seconds) + 30):
            sys.exit("the JACK server stopped running the tap's cycles")
    pcm = np.clip(np.round(heard * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(heard_path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


if __name__ == "__main__":
    main()
