"""Pin the images of a kustomization by digest, or check that they are pinned.

    python scripts/pin_images.py deploy/k8s/overlays/cpu \\
        tfic-inference=registry.example.com/tfic/tfic-inference:0.1.0@sha256:<64 hex> \\
        tfic-gateway=registry.example.com/tfic/tfic-gateway:0.1.0@sha256:<64 hex> \\
        tfic-trainer=registry.example.com/tfic/tfic-trainer:0.1.0@sha256:<64 hex>
    python scripts/pin_images.py --check deploy/k8s/overlays/cpu deploy/k8s/overlays/gpu

Each NAME=REFERENCE sets ``newName``, ``newTag`` (if the reference has a tag) and ``digest`` of the entry
``name: NAME`` under ``images:`` in DIR/kustomization.yaml; the rest of the file (comments included) is left
as it is. The digest is the one your build pushed: ``docker buildx build --push --metadata-file meta.json``
writes it as ``containerimage.digest``, ``crane digest REF`` or ``docker buildx imagetools inspect REF`` read
it from the registry. A tag can be moved to other content; a digest cannot, so every node runs the bytes
that were tested.

``--check`` exits with status 1 naming every image entry without a digest or with the all-zero placeholder
the shipped overlays carry (run it in the pipeline that applies the manifests).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PLACEHOLDER = "sha256:" + "0" * 64


def split_reference(reference: str) -> tuple[str, str, str]:
    """``registry/repo:tag@sha256:…`` → repository, tag, digest (a missing part is "")."""
    rest, _, digest = reference.partition("@")
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        return rest[:colon], rest[colon + 1 :], digest
    return rest, "", digest


def unpinned(folder: Path) -> list[str]:
    """The image entries of ``folder``'s kustomization that lack a real digest, as messages."""
    data = yaml.safe_load((folder / "kustomization.yaml").read_text()) or {}
    problems = []
    for entry in data.get("images", []):
        digest = str(entry.get("digest", ""))
        if not digest:
            problems.append(f"{folder}: image {entry['name']} has no digest")
        elif digest == PLACEHOLDER:
            problems.append(f"{folder}: image {entry['name']} still has the placeholder digest")
        elif not DIGEST.match(digest):
            problems.append(f"{folder}: image {entry['name']} has a malformed digest {digest!r}")
    return problems


def pin(text: str, name: str, reference: str) -> str:
    """``text`` (a kustomization.yaml) with the ``images:`` entry ``name`` pointing at ``reference``."""
    repository, tag, digest = split_reference(reference)
    if not DIGEST.match(digest):
        raise ValueError(f"{name}={reference}: the reference must end in @sha256:<64 hex digits>")
    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if re.fullmatch(rf"\s*- name: ['\"]?{re.escape(name)}['\"]?\s*", line)),
        None,
    )
    if start is None:
        raise ValueError(f"no image entry 'name: {name}' in the kustomization")
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent) and not lines[end].lstrip().startswith("#"):
        end += 1
    fields = {"newName": repository, **({"newTag": f'"{tag}"'} if tag else {}), "digest": digest}
    replaced = {"newName", "newTag", "digest"}  # a reference without a tag drops the old tag too
    body = [line for line in lines[start + 1 : end] if line.strip().split(":")[0] not in replaced]
    body += [f"{indent}{key}: {value}\n" for key, value in fields.items()]
    return "".join([*lines[: start + 1], *body, *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report unpinned images of every FOLDER (status 1 if any)")
    parser.add_argument("folder", type=Path, help="a folder holding kustomization.yaml")
    parser.add_argument("rest", nargs="*", metavar="NAME=REFERENCE@sha256:DIGEST | FOLDER (with --check)")
    args = parser.parse_args(argv)
    if args.check:
        problems = [p for folder in (args.folder, *map(Path, args.rest)) for p in unpinned(folder)]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if not args.rest:
        parser.error("give NAME=REFERENCE@sha256:DIGEST for the images to pin")
    path = args.folder / "kustomization.yaml"
    text = path.read_text()
    try:
        for item in args.rest:
            name, sep, reference = item.partition("=")
            if not sep:
                raise ValueError(f"{item}: expected NAME=REFERENCE@sha256:DIGEST")
            text = pin(text, name, reference)
    except ValueError as exc:
        print(f"pin_images: {exc}", file=sys.stderr)
        return 2
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
