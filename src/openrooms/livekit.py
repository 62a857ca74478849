"""The bridge to a LiveKit media server: an admission becomes a LiveKit access token for the room's call.

The token's grants follow the admitted capabilities (which follow the role, see `service/admission.py`), so the
permission matrix stays the one place that decides; its lifetime ends at the admission's `grant_expires_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from livekit import api

from openrooms.service.admission import Admission, Capability
from openrooms.service.clock import Clock

# LiveKit's server refuses API secrets shorter than this.
MIN_SECRET_LENGTH = 32
# The LiveKit track sources (`TrackSource` names, lower case) each capability lets a participant publish.
SOURCES_OF = {
    Capability.UNMUTE_MIC: ("microphone",),
    Capability.TURN_VIDEO_ON: ("camera",),
    Capability.SHARE_SCREEN: ("screen_share", "screen_share_audio"),
}
# Capabilities carried over LiveKit data messages (reactions, raised hands, real-time text).
DATA_CAPABILITIES = (Capability.USE_REACTIONS, Capability.RAISE_HAND, Capability.REAL_TIME_TEXT)
# Capabilities that act on other participants: LiveKit's room admin grant.
ADMIN_CAPABILITIES = (Capability.MUTE_OTHERS, Capability.REMOVE_PARTICIPANT, Capability.SPOTLIGHT_PARTICIPANT,
                      Capability.REMOVE_PARTICIPANTS_SPOTLIGHT)
# The participant attribute that tells other clients the participant's room role.
ROLE_ATTRIBUTE = "acs.role"


@dataclass(frozen=True, slots=True)
class LiveKitGrant:
    url: str
    room: str
    identity: str
    token: str
    expires_at: int  # ticks


def video_grants(admission: Admission) -> api.VideoGrants:
    sources = [source for capability, names in SOURCES_OF.items() if admission.has(capability) for source in names]
    return api.VideoGrants(
        room_join=True,
        room=admission.room.id,
        can_subscribe=True,  # every role receives audio, video and screen share
        can_publish=bool(sources),
        can_publish_sources=sources or None,  # an empty list would mean any source to LiveKit
        can_publish_data=any(admission.has(c) for c in DATA_CAPABILITIES),
        room_admin=any(admission.has(c) for c in ADMIN_CAPABILITIES),
    )


class LiveKitBridge:
    def __init__(self, url: str, api_key: str, api_secret: str, clock: Clock) -> None:
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._clock = clock

    def grant(self, admission: Admission) -> LiveKitGrant:
        """A LiveKit access token for room `<roomId>`, identity `<rawId>`, valid until `grant_expires_at`."""
        token = (
            api.AccessToken(self._api_key, self._api_secret)
            .with_identity(admission.participant.raw_id)
            .with_grants(video_grants(admission))
            .with_attributes({ROLE_ATTRIBUTE: admission.participant.role.value})
            # The token library counts from the wall clock; the time left is the same either way.
            .with_ttl(timedelta(microseconds=(admission.grant_expires_at - self._clock.now()) // 10))
        )
        if admission.has(Capability.PSTN_DIAL_OUT):
            token = token.with_sip_grants(api.SIPGrants(call=True))
        return LiveKitGrant(self.url, admission.room.id, admission.participant.raw_id, token.to_jwt(),
                            admission.grant_expires_at)
