"""deid.errors: errors survive pickling, as they must when a Dask worker sends one back to the flow."""

from __future__ import annotations

import pickle

from deid.errors import DeidError, MalformedInput, OutputExists


def test_malformed_input_round_trips_through_pickle() -> None:
    """Same class, message, path and detail after a pickle round trip."""
    sent = MalformedInput("alignments/GGS-1.bam (alignment job 3)", "not a BAM or CRAM file")
    back = pickle.loads(pickle.dumps(sent))  # noqa: S301 - our own bytes
    expected = (MalformedInput, str(sent), sent.path, sent.detail)
    assert expected == (type(back), str(back), back.path, back.detail)


def test_output_exists_and_plain_errors_round_trip_through_pickle() -> None:
    """OutputExists keeps its path; a plain DeidError its message."""
    exists = pickle.loads(pickle.dumps(OutputExists("releases/rel-1")))  # noqa: S301
    plain = pickle.loads(pickle.dumps(DeidError("job 2 failed")))  # noqa: S301
    expected = ((OutputExists, "releases/rel-1"), (DeidError, "job 2 failed"))
    assert expected == ((type(exists), exists.path), (type(plain), str(plain)))
