// Run with: python -m openrooms.testing node --test
import assert from "node:assert/strict";
import { test } from "node:test";

import { CommunicationIdentityClient } from "@azure/communication-identity";
import { RoomsClient } from "@azure/communication-rooms";

// Set by `python -m openrooms.testing`, which also makes Node trust its CA (NODE_EXTRA_CA_CERTS).
const connectionString = process.env.OPENROOMS_CONNECTION_STRING;

test("a user becomes a room's presenter", async () => {
  const identity = new CommunicationIdentityClient(connectionString);
  const rooms = new RoomsClient(connectionString);
  const user = await identity.createUser();

  const room = await rooms.createRoom({ participants: [{ id: user, role: "Presenter" }] });

  const participants = [];
  for await (const participant of rooms.listParticipants(room.id)) participants.push(participant);
  assert.deepEqual(
    participants.map((p) => [p.id.communicationUserId, p.role]),
    [[user.communicationUserId, "Presenter"]],
  );
});
