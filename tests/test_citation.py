"""CITATION.cff is valid Citation File Format 1.2.0 and cites the software and both papers with their authors."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

CFF = Path(__file__).resolve().parents[1] / "CITATION.cff"
PAPERS = {
    "Artificial Fingerprinting for Generative Models: Rooting Deepfake Attribution in Training Data":
        (2021, ["Yu", "Skripniuk", "Abdelnabi", "Fritz"], "ICCV"),
    "Responsible Disclosure of Generative Models Using Scalable Fingerprinting":
        (2022, ["Yu", "Skripniuk", "Chen", "Davis", "Fritz"], "ICLR"),
}
# The keys CFF 1.2.0 allows at the top level and in a reference (schema.json of citation-file-format 1.2.0)
TOP_KEYS = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers",
            "keywords", "license", "license-url", "message", "preferred-citation", "references", "repository",
            "repository-artifact", "repository-code", "title", "type", "url", "version"}
REFERENCE_TYPES = {"article", "book", "conference", "conference-paper", "generic", "proceedings", "report",
                   "software", "thesis", "unpublished"}


def _person_ok(person: dict) -> bool:
    return isinstance(person, dict) and bool(person.get("family-names") or person.get("name"))


def test_citation_cff_is_valid_and_cites_both_papers():
    cff = yaml.safe_load(CFF.read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert {"authors", "message", "title"} <= set(cff) and set(cff) <= TOP_KEYS, set(cff) - TOP_KEYS
    assert cff["license"] == "MIT" and "version" not in cff  # the version is written in _version.py only
    assert cff["authors"] and all(_person_ok(a) for a in cff["authors"])
    refs = {r["title"]: r for r in cff["references"]}
    assert set(refs) == set(PAPERS)
    for title, (year, families, venue) in PAPERS.items():
        ref = refs[title]
        assert ref["type"] in REFERENCE_TYPES and ref["year"] == year and all(_person_ok(a) for a in ref["authors"])
        assert [a["family-names"] for a in ref["authors"]] == families
        assert venue in ref["conference"]["name"]
        assert all(re.fullmatch(r"arXiv:\d{4}\.\d{5}", i["value"]) for i in ref["identifiers"])
