"""The call signalling's reading of an offer (which media it sends, the audio mids a Presenter mutes) and the
labels openrooms gives Janus feeds: the rules of tests/calls in their fastest layer."""

from __future__ import annotations

import pytest

from openrooms.calls.service import Feed, audio_mids, offered_media

HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def section(kind: str, mid: str, direction: str = "sendrecv", port: int = 9) -> str:
    return f"m={kind} {port} UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\na={direction}\r\n"


@pytest.mark.parametrize(("sections", "sent"), [
    ([section("audio", "0"), section("video", "1")], {"audio", "video"}),
    ([section("audio", "0", "sendonly")], {"audio"}),
    ([section("audio", "0", "recvonly"), section("video", "1")], {"video"}),
    ([section("audio", "0", "inactive"), section("video", "1", "recvonly")], set()),
    ([section("audio", "0", port=0), section("video", "1")], {"video"}),  # a rejected m-line sends nothing
    ([], set()),
])
def test_an_offer_sends_the_media_of_its_sending_m_lines(sections: list[str], sent: set[str]) -> None:
    assert offered_media(HEAD + "".join(sections)) == sent


def test_the_audio_mids_are_those_a_presenter_mutes() -> None:
    offer = HEAD + section("audio", "0") + section("video", "1") + section("audio", "a2")
    assert audio_mids(offer) == ["0", "a2"]


def test_a_feed_label_round_trips_and_a_foreign_one_is_ignored() -> None:
    feed = Feed(7, "8:acs:r_u", "Attendee", "camera", 123, ["0"], display_name="Ann")
    assert Feed.of({"id": 7, "display": feed.display(), "publisher": True}) == Feed(
        7, "8:acs:r_u", "Attendee", "camera", 123, ["0"], True, "Ann")
    assert Feed.of({"id": 8, "display": "someone who joined Janus directly"}) is None
    assert Feed.of({"id": 9}) is None
