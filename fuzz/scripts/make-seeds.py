#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/seed-* (run from anywhere; overwrites seeds).

The root .gitignore ignores fuzz/corpus/*/* except files named seed-*, so only these are
committed; whatever `cargo fuzz run` adds next to them stays local.
"""
import json
import pathlib
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "corpus"


def envelope(payload: bytes) -> bytes:
    """atomic_file::checksum::encode."""
    crc = zlib.crc32(payload) & 0xFFFFFFFF
    return b"# atomic-file v1 len=%d crc32=%08x\n" % (len(payload), crc) + payload


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


DOC = {
    "name": "SEC",
    "next": 20,
    "note": None,
    "gaps": [3, 7, 4294967295],
    "labels": {"owner": -1, "ünïcode ✓": 9223372036854775807},
    "state": {"Closed": {"at": 18446744073709551615}},
    "children": [{"name": "GAP-OP", "next": 0, "state": "Open",
                  "children": [{"name": "x", "next": 1, "state": {"Reserved": ["a", "b"]}}]}],
}
DOC_JSON = (json.dumps(DOC, indent=2, ensure_ascii=False) + "\n").encode()

JSON_SEEDS = {
    "doc.json": DOC_JSON,
    "minimal-doc.json": b'{"name":"a","next":1}',
    "wrong-types.json": b'{"name":1,"next":-1,"gaps":[1.5],"labels":{"a":"b"},"state":"Nope"}',
    "duplicate-field.json": b'{"name":"a","name":"b","next":1,"labels":{"k":1,"k":2}}',
    "numbers.json": b'[0,-0,-0.0,1.0,1e308,5e-324,2.2250738585072014e-308,0.30000000000000004,'
                    b'18446744073709551615,18446744073709551616,-9223372036854775808,1E+2,123456789012345678901234567890]',
    "strings.json": b'["", "\\u0000", "\\ud83d\\ude00", "tab\\there", "\\"\\\\\\/\\b\\f\\n\\r", "\\u00e9\\u2028"]',
    "lone-surrogate.json": b'["\\ud800"]',
    # Written by serde_json as this (correct, shortest) text, but read back one ULP off by its
    # default float parser: the reason for gapreg_fuzz::JSON_FLOAT_ULPS.
    "float-1ulp.json": b"[1.8446744073703686e+23, -1.0016497685151441e+74]",
    "nested.json": b'{"a":{"b":{"c":[{"d":[[[[null,true,false]]]]}]}}}',
    "deep-127.json": b"[" * 127 + b"]" * 127,
    "deep-200.json": b"[" * 200 + b"]" * 200,
    "deep-unknown-field.json": b'{"name":"a","next":1,"extra":' + b"[" * 200 + b"]" * 200 + b"}",
    "truncated.json": DOC_JSON[: len(DOC_JSON) // 2],
    "trailing.json": b'{"name":"a","next":1} x',
    "bom.json": b"\xef\xbb\xbf{}",
}

YAML_DOC = """\
# a comment
name: SEC
next: 20
note: ~
gaps: [3, 7]
labels:
  owner: -1
  "quoted key": 2
state: !Closed
  at: 5
children:
  - name: GAP-OP
    next: 0
    state: Open
  - name: x
    next: 1
    state:
      Reserved: [a, b]
"""

YAML_SEEDS = {
    "doc.yaml": YAML_DOC.encode(),
    "anchors.yaml": b"base: &b {x: 1, y: [1, 2]}\nother: *b\nlist: [*b, *b]\nmerged:\n  <<: *b\n  z: 3\n",
    "alias-bomb.yaml": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    "recursive-alias.yaml": b"a: &a [*a]\n",
    "scalars.yaml": b"- .nan\n- -.inf\n- .inf\n- 0x10\n- 0o17\n- 1e3\n- 1_000\n- +1\n- 007\n- yes\n- no\n- on\n"
                    b"- ~\n- null\n- 'true'\n- \"1\"\n- 1.0\n- -0.0\n- 18446744073709551615\n- -9223372036854775808\n- 2001-12-14\n",
    "big-int.yaml": b"- 18446744073709551616\n- -9223372036854775809\n",
    "strings.yaml": b"- |\n  literal\n   block\n- >-\n  folded\n  text\n- \"esc \\t \\u263A \\x00\"\n- 'it''s'\n"
                    b"- \"<<\"\n- \"- x\"\n- \": y\"\n- \"#c\"\n- \" lead\"\n- \"trail \"\n- \"\"\n",
    "tags.yaml": b"- !!str 1\n- !!int \"2\"\n- !!float 3\n- !!bool true\n- !!binary aGVsbG8=\n",
    "custom-tags.yaml": b"- !custom {a: 1}\n- !Open\n",
    "scalar-keys.yaml": b"1: int key\nnull: null key\ntrue: bool key\n1.5: float key\n~: tilde\n",
    "complex-keys.yaml": b"? [a, b]\n: 1\n",
    "multi-doc.yaml": b"a: 1\n---\nb: 2\n...\n",
    "flow-deep.yaml": b"[" * 200 + b"]" * 200,
    "block-deep.yaml": "".join("  " * i + "- \n" for i in range(150)).encode(),
    "json-as-yaml.yaml": DOC_JSON,
    "duplicate-key.yaml": b"a: 1\na: 2\n",
    "bad-indent.yaml": b"a:\n  b: 1\n c: 2\n",
}

CHECKSUM_PAYLOAD = b'{"next": 20}\n'
GOOD = envelope(CHECKSUM_PAYLOAD)
CHECKSUM_SEEDS = {
    "valid": GOOD,
    "valid-empty": envelope(b""),
    "valid-doc": envelope(DOC_JSON),
    "nested": envelope(GOOD),
    "truncated-payload": GOOD[:-3],
    "truncated-header": GOOD[:25],
    "bitflip-payload": flip(GOOD, (len(GOOD) - 3) * 8),
    "bitflip-header-len": GOOD.replace(b"len=13", b"len=12"),
    "bitflip-newline": flip(GOOD, GOOD.index(b"\n") * 8 + 1),
    "uppercase-hex": GOOD.upper(),
    "leading-zero": GOOD.replace(b"len=13", b"len=013"),
    "version-2": GOOD.replace(b"v1", b"v2"),
    "extended": GOOD + b"x",
    "no-header": CHECKSUM_PAYLOAD,
    "huge-len": b"# atomic-file v1 len=99999999999999999999 crc32=00000000\n",
}

# checksummed_typed: first byte is the mode (even: raw file; odd: payload to wrap).
TYPED_SEEDS = {}
for name, data in CHECKSUM_SEEDS.items():
    TYPED_SEEDS["raw-" + name] = b"\x00" + data
for name in ["doc.json", "minimal-doc.json", "wrong-types.json", "duplicate-field.json",
             "numbers.json", "deep-200.json", "truncated.json"]:
    TYPED_SEEDS["wrapped-" + name] = b"\x01" + JSON_SEEDS[name]
TYPED_SEEDS["raw-valid-minimal-doc"] = b"\x00" + envelope(JSON_SEEDS["minimal-doc.json"])

CORPORA = {
    "checksum_decode": CHECKSUM_SEEDS,
    "json_read": JSON_SEEDS,
    "yaml_read": YAML_SEEDS,
    "checksummed_typed": TYPED_SEEDS,
}

for target, seeds in CORPORA.items():
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / ("seed-" + name)).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")
