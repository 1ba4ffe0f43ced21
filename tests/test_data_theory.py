
from engine.data.theory import Note, convert_mode, diatonic_chords, harmonize, key_name


def test_key_names_spell_as_musicians_do():
    assert key_name(9, "minor") == "A minor"
    assert key_name(3, "major") == "E♭ major"
    assert key_name(1, "minor") == "C♯ minor"


def test_mode_conversion_to_harmonic_minor_and_back():
    tonic = 2  # D
    major_scale = [62, 64, 66, 67, 69, 71, 73]
    minor = [convert_mode(p, tonic, "major", "minor") for p in major_scale]
    assert minor == [62, 64, 65, 67, 69, 70, 73]  # leading tone kept
    assert convert_mode(72, tonic, "minor", "major") == 73
    assert [convert_mode(p, tonic, "minor", "major") for p in minor] == major_scale


def test_harmonize_puts_melody_notes_in_the_chords():
    # C major arpeggios, one chord per bar: C, F, G, C
    bars = [(60, 64, 67, 72), (65, 69, 72, 77), (67, 71, 74, 79), (72, 67, 64, 60)]
    notes = [Note(p, 4 * b + i, 1.0) for b, ps in enumerate(bars) for i, p in enumerate(ps)]
    chords = harmonize(notes, 0, "major", 4.0, 4)
    assert [c.root for c in chords] == [0, 5, 7, 0]
    assert all(set(c.pitch_classes) == {p % 12 for p in ps} for c, ps in zip(chords, bars))


def test_diatonic_chords_are_in_key():
    for tonic in range(12):
        for mode, scale in (("major", (0, 2, 4, 5, 7, 9, 11)), ("minor", (0, 2, 3, 5, 7, 8, 10, 11))):
            allowed = {(tonic + s) % 12 for s in scale}
            for _, ch in diatonic_chords(tonic, mode):
                assert set(ch.pitch_classes) <= allowed


def test_a_clip_planned_on_bars_of_rest_still_gets_a_lead():
    """A score part that waits for many bars: the planned excerpt can be all rest (it crashed a corpus build)."""
    from dataclasses import replace

    from engine.data.arrange import arrange
    from engine.data.melodies import Melody
    from engine.data.plan import MelodyPool, plan_clip

    spec, mel = plan_clip(3, 0, MelodyPool([]))
    notes = [Note(67 + k, k * mel.beat_ql, mel.beat_ql) for k in range(4)]
    notes.append(Note(72, 30 * mel.bar_ql, mel.bar_ql))  # a long rest, then one note in bar 31
    waits = Melody("waits", "test", "waits", notes, mel.bar_ql, mel.beat_ql, mel.tonic, mel.mode)
    arr = arrange(waits, replace(spec, start_bar=10))
    assert len(arr.lead) >= 4  # the tune from its first note
