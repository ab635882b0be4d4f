#!/usr/bin/env python3
"""Writes the seed corpus of the `idreserve_counters` fuzz target.

Byte 0 of each seed is the target's mode (0: a log, 1: a log or a first-release log,
2: slots behind a generated header, 3: a writer's script); the rest follows the format in
`crates/idreserve/src/log.rs`. Run from `fuzz/`: `scripts/make-idreserve-seeds.py`.
"""
import os
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "corpus", "idreserve_counters")
SLOT = 64


def pad(text, fill=b" "):
    assert len(text) < SLOT
    return text + fill * (SLOT - 1 - len(text)) + b"\n"


def header(slots):
    body = b"# idreserve counters v2 slots=%d" % slots
    crc = zlib.crc32(body)
    return pad(body + b" crc32=%08x" % crc), crc


def record(prefix, value, chain):
    body = b"%s %d" % (prefix, value)
    crc = zlib.crc32(b"%08x " % chain + body)
    return pad(body + b" %08x" % crc), crc


def log(records, slots=64):
    out, chain = header(slots)
    for prefix, value in records:
        slot, chain = record(prefix, value, chain)
        out += slot
    out += pad(b"", b".") * (slots - len(records))
    return out


def legacy(records, final_newline=True):
    lines = [b"%s %d %08x" % (p, v, zlib.crc32(b"%s %d" % (p, v))) for p, v in records]
    return b"\n".join(lines) + (b"\n" if final_newline else b"")


def main():
    os.makedirs(OUT, exist_ok=True)
    two = [(b"SEC", 24), (b"GAP-OP", 1091)]
    with_records = log(two)
    interrupted = bytearray(with_records)
    interrupted[3 * SLOT : 3 * SLOT + 8] = b"SEC 25 1"
    full = log([(b"SEC", i + 1) for i in range(64)])
    crlf = with_records.replace(b"\n", b"\r\n")
    slots_only = log(two)[SLOT:]
    seeds = {
        "new-log": b"\x00" + log([]),
        "records": b"\x00" + with_records,
        "interrupted-write": b"\x00" + bytes(interrupted),
        "full": b"\x00" + full,
        "max-values": b"\x00" + log([(b"A" * 32, 2**64 - 1), (b"B", 0)]),
        "garbage": b"\x00" + b"\x00garbage{{",
        "crlf": b"\x00" + crlf,
        "truncated": b"\x00" + with_records[:-10],
        "legacy": b"\x01" + legacy(two),
        "legacy-no-newline": b"\x01" + legacy(two, final_newline=False),
        "legacy-empty": b"\x01",
        "legacy-torn": b"\x01" + legacy(two) + b"SEC 9 12",
        "slots": b"\x02" + slots_only,
        "slots-interrupted": b"\x02" + bytes(interrupted[SLOT:]),
        "writer-short": b"\x03" + bytes([0, 5, 0, 1, 9, 0, 0, 6, 0]),
        "writer-fill": b"\x03" + bytes(x for i in range(80) for x in (i % 4, i, 0)),
        "writer-max": b"\x03" + bytes([0x80, 0, 0, 0x83, 1, 0]),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
