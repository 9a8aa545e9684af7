"""A hypothesis strategy for malformed tables, shared by the CLI fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

_CELLS = st.one_of(
    st.sampled_from(
        ["NaCl", "SrTiO3", "XyO3", "fe2o3", "He", "", "nan", "inf", "-1.5", "1,5", '"', "Ca(OH)2"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=5),
)
_HEADERS = st.lists(
    st.sampled_from(["formula", "e_form", "composition", "x", "formula", ""]), min_size=1,
    max_size=4,
)  # fmt: skip


@st.composite
def malformed_tables(draw) -> bytes:
    """Malformed "CSV" bytes: random bytes, or a header and ragged rows of odd cells, with a
    random delimiter and encoding."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=300))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    header = draw(_HEADERS)
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=5), max_size=6))
    text = "\n".join([sep.join(header), *(sep.join(r) for r in rows)]) + "\n"
    enc = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-8-sig"]))
    return text.encode(enc, errors="replace")
