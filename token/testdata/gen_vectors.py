"""Writes vectors.json: tokens made by pymacaroons, the library devpi-tokens
uses, so the Go unit tests check byte-level compatibility without starting
Python. Rerun with the e2e virtualenv:
    .venv/client/bin/python token/testdata/gen_vectors.py > token/testdata/vectors.json
The root keys here are test values, not secrets of any server."""
import json
import pymacaroons

vectors = []


def add(name, key, ident, caveats, derive):
    m = pymacaroons.Macaroon(identifier=ident, key=key, version=pymacaroons.MACAROON_V2)
    for c in caveats:
        m.add_first_party_caveat(c)
    root = m.serialize()
    d = pymacaroons.Macaroon.deserialize(root)
    for c in derive:
        d.add_first_party_caveat(c)
    vectors.append(dict(
        name=name, root_key=key, identifier=ident, caveats=caveats,
        token="devpi-" + root, signature=m.signature,
        derive=derive, derived=d.serialize(), derived_signature=d.signature))


add("plain", "k" * 16, "alice-abcdEFGH", ["expires=4102444800"], ["expires=4000000000"])
add("dash-user", "0123456789abcdef", "dev-ops-team-XYZ23456",
    ["allowed=pkg_read,upload", "expires=never"], ["indexes=dev-ops-team/prod", "projects=foo"])
add("pypi-caveats", "s3cr3t-test-key!", "bob-mnpqRSTU", ["expires=4102444800"],
    ['{"version": 1, "permissions": {"projects": ["Foo.Bar"]}}', '{"nbf": 1700000000, "exp": 4102444800}',
     '[0, 4102444800, 1700000000]', '[1, ["foo-bar"]]'])
add("no-caveats", "another key value", "carol-23456789", [], ["not_before=1700000000"])
print(json.dumps(vectors, indent=2))
