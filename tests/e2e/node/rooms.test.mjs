// The ACS Rooms quickstart for JavaScript, run unmodified against openrooms: only the connection string differs.
// Run by tests/e2e/test_node_sdk.py, which starts the server and sets:
//   OPENROOMS_TEST_CONNECTION_STRING  endpoint=https://127.0.0.1:<port>/;accesskey=<key>
//   OPENROOMS_TEST_PAGE_SIZE          the server's --page-size, so that listings span several pages
//   NODE_EXTRA_CA_CERTS               the server's local CA, as a user trusts it
import assert from "node:assert/strict";
import { test } from "node:test";

import { CommunicationIdentityClient } from "@azure/communication-identity";
import { RoomsClient } from "@azure/communication-rooms";

const connectionString = process.env.OPENROOMS_TEST_CONNECTION_STRING;
assert.ok(connectionString, "OPENROOMS_TEST_CONNECTION_STRING must be set (tests/e2e/test_node_sdk.py sets it)");
const pageSize = Number(process.env.OPENROOMS_TEST_PAGE_SIZE);
assert.ok(pageSize > 0, "OPENROOMS_TEST_PAGE_SIZE must be the server's --page-size");

// The SDK pipeline refuses plain http unless told otherwise; HTTPS (openrooms' default) needs no option at all.
const plainHttp = /endpoint=http:\/\//i.test(connectionString);
const clientOptions = plainHttp ? { allowInsecureConnection: true } : {};
const roomsClient = new RoomsClient(connectionString, clientOptions);
const identityClient = new CommunicationIdentityClient(connectionString, clientOptions);

const DAY_MS = 24 * 60 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;

/** A new ACS user from the server's Identity API, as `{ communicationUserId }`. */
async function newUser() {
  const user = await identityClient.createUser();
  assert.match(user.communicationUserId, /^8:acs:[0-9a-f-]{36}_/);
  return user;
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function participantsOf(roomId) {
  const participants = await collect(roomsClient.listParticipants(roomId));
  return Object.fromEntries(participants.map((p) => [p.id.communicationUserId, p.role]));
}

test("quickstart: create, get, update, list, manage participants, delete", async () => {
  const user1 = await newUser();
  const user2 = await newUser();

  // Create a room.
  const validFrom = new Date(Date.now());
  let validUntil = new Date(validFrom.getTime() + HOUR_MS);
  let pstnDialOutEnabled = true;
  const createRoom = await roomsClient.createRoom({
    validFrom,
    validUntil,
    pstnDialOutEnabled,
    participants: [{ id: user1, role: "Presenter" }],
  });
  const roomId = createRoom.id;
  assert.match(roomId, /^\d{16,18}$/);
  assert.equal(createRoom.validFrom.getTime(), validFrom.getTime());
  assert.equal(createRoom.validUntil.getTime(), validUntil.getTime());
  assert.equal(createRoom.pstnDialOutEnabled, true);
  assert.ok(createRoom.createdOn instanceof Date && !Number.isNaN(createRoom.createdOn.getTime()));

  // Get the room.
  const getRoom = await roomsClient.getRoom(roomId);
  assert.deepEqual(getRoom, createRoom);

  // Update the validity window and PSTN dial-out.
  validUntil = new Date(validFrom.getTime() + 5 * HOUR_MS);
  pstnDialOutEnabled = false;
  const updateRoom = await roomsClient.updateRoom(roomId, { validFrom, validUntil, pstnDialOutEnabled });
  assert.equal(updateRoom.id, roomId);
  assert.equal(updateRoom.validUntil.getTime(), validUntil.getTime());
  assert.equal(updateRoom.pstnDialOutEnabled, false);
  assert.deepEqual(await roomsClient.getRoom(roomId), updateRoom);

  // PSTN dial-out alone: the validity window stays.
  const dialOutOnly = await roomsClient.updateRoom(roomId, { pstnDialOutEnabled: true });
  assert.equal(dialOutOnly.pstnDialOutEnabled, true);
  assert.equal(dialOutOnly.validFrom.getTime(), validFrom.getTime());
  assert.equal(dialOutOnly.validUntil.getTime(), validUntil.getTime());

  // List rooms.
  const roomsList = await roomsClient.listRooms();
  const listed = [];
  for await (const currentRoom of roomsList) listed.push(currentRoom);
  assert.deepEqual(listed.find((room) => room.id === roomId), dialOutOnly);

  // Add or update participants: user1 changes role, user2 joins.
  await roomsClient.addOrUpdateParticipants(roomId, [
    { id: user1, role: "Attendee" },
    { id: user2, role: "Consumer" },
  ]);
  const participantsList = await roomsClient.listParticipants(roomId);
  const participants = [];
  for await (const participant of participantsList) participants.push(participant);
  assert.deepEqual(
    participants.map((p) => [p.id.kind, p.id.communicationUserId, p.role]).sort(),
    [
      ["communicationUser", user1.communicationUserId, "Attendee"],
      ["communicationUser", user2.communicationUserId, "Consumer"],
    ].sort(),
  );

  // Remove participants.
  await roomsClient.removeParticipants(roomId, [user1, user2]);
  assert.deepEqual(await collect(roomsClient.listParticipants(roomId)), []);

  // Delete the room.
  await roomsClient.deleteRoom(roomId);
  await assert.rejects(roomsClient.getRoom(roomId), { name: "RestError", statusCode: 404, code: "NotFound" });
});

test("createRoom without options: now, now + 180 days, no dial-out, nobody", async () => {
  const before = Date.now();
  const room = await roomsClient.createRoom();
  assert.ok(room.validFrom.getTime() >= before - 1000, "validFrom defaults to now");
  assert.equal(room.validUntil.getTime() - room.validFrom.getTime(), 180 * DAY_MS);
  assert.equal(room.pstnDialOutEnabled, false);
  assert.deepEqual(await collect(roomsClient.listParticipants(room.id)), []);
  await roomsClient.deleteRoom(room.id);
});

test("what the SDK puts on the wire: Host, date formats, the empty-create body", async () => {
  // A policy placed after signing sees each request exactly as it is sent.
  const sent = [];
  const recorder = {
    name: "recordRequests",
    sendRequest(request, next) {
      sent.push({ method: request.method, url: request.url, headers: request.headers.toJSON(), body: request.body });
      return next(request);
    },
  };
  const client = new RoomsClient(connectionString, {
    ...clientOptions,
    additionalPolicies: [{ policy: recorder, position: "perRetry" }],
  });
  const endpointHost = new URL(connectionString.match(/endpoint=([^;]+)/i)[1]).host;

  const empty = await client.createRoom();
  const validFrom = new Date(Date.now() + HOUR_MS);
  const validUntil = new Date(validFrom.getTime() + HOUR_MS);
  const room = await client.createRoom({ validFrom, validUntil });

  const [emptyCreate, create] = sent;
  assert.equal(emptyCreate.body, '{"participants":{}}');
  assert.deepEqual(JSON.parse(create.body), {
    validFrom: validFrom.toISOString(),
    validUntil: validUntil.toISOString(),
    participants: {},
  });
  for (const request of sent) {
    assert.equal(request.headers.host, endpointHost, "the signed Host is the endpoint's host:port, port not doubled");
    assert.match(request.headers["x-ms-date"], /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    assert.match(request.headers["repeatability-request-id"], /^[0-9a-f-]{36}$/);
    assert.match(request.headers["repeatability-first-sent"], /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  }
  // The SDK sends milliseconds and gets them back unchanged.
  assert.equal(room.validFrom.getTime(), validFrom.getTime());
  assert.equal(room.validUntil.getTime(), validUntil.getTime());

  await client.deleteRoom(empty.id);
  await client.deleteRoom(room.id);
});

test("listRooms follows nextLink across pages", async () => {
  const created = [];
  for (let i = 0; i < 2 * pageSize + 1; i++) created.push((await roomsClient.createRoom()).id);

  const pages = await collect(roomsClient.listRooms().byPage());
  const ids = pages.flat().map((room) => room.id);
  assert.ok(pages.length >= 3, `expected at least 3 pages of ${pageSize}, got ${pages.length}`);
  for (const page of pages.slice(0, -1)) assert.equal(page.length, pageSize);
  assert.ok(pages.at(-1).length >= 1 && pages.at(-1).length <= pageSize);
  assert.equal(new Set(ids).size, ids.length, "no room is listed twice");
  for (const id of created) assert.ok(ids.includes(id), `room ${id} is listed`);

  // The plain async iterator walks the same pages.
  assert.deepEqual((await collect(roomsClient.listRooms())).map((room) => room.id), ids);

  for (const id of created) await roomsClient.deleteRoom(id);
});

test("participants: roles incl. Collaborator, listing across pages, removal", async () => {
  const users = [];
  for (let i = 0; i < pageSize + 2; i++) users.push(await newUser());
  const room = await roomsClient.createRoom({ participants: [{ id: users[0], role: "Collaborator" }] });
  assert.deepEqual(await participantsOf(room.id), { [users[0].communicationUserId]: "Collaborator" });

  // Add the rest with the default role, and change user 0 from Collaborator to Presenter.
  await roomsClient.addOrUpdateParticipants(room.id, [
    { id: users[0], role: "Presenter" },
    ...users.slice(1).map((id) => ({ id })),
  ]);
  const expected = Object.fromEntries(users.map((u, i) => [u.communicationUserId, i === 0 ? "Presenter" : "Attendee"]));
  const pages = await collect(roomsClient.listParticipants(room.id).byPage());
  assert.ok(pages.length >= 2, `participants span pages of ${pageSize}`);
  assert.deepEqual(await participantsOf(room.id), expected);

  // Every role the 2025-03-13 API knows.
  const roles = ["Presenter", "Attendee", "Consumer", "Collaborator"];
  await roomsClient.addOrUpdateParticipants(room.id, roles.map((role, i) => ({ id: users[i], role })));
  for (const [i, role] of roles.entries()) expected[users[i].communicationUserId] = role;
  assert.deepEqual(await participantsOf(room.id), expected);

  // Remove two, one of them twice over: removing someone not in the room is no error.
  await roomsClient.removeParticipants(room.id, [users[1], users[2]]);
  await roomsClient.removeParticipants(room.id, [users[1]]);
  delete expected[users[1].communicationUserId];
  delete expected[users[2].communicationUserId];
  assert.deepEqual(await participantsOf(room.id), expected);

  await roomsClient.deleteRoom(room.id);
});

test("errors arrive as RestError with the ACS codes", async () => {
  const room = await roomsClient.createRoom();
  await roomsClient.deleteRoom(room.id);
  await assert.rejects(roomsClient.getRoom(room.id), (error) => {
    assert.equal(error.name, "RestError");
    assert.equal(error.statusCode, 404);
    assert.equal(error.code, "NotFound");
    assert.equal(error.message, "The server cannot find the requested resource.");
    return true;
  });
  await assert.rejects(roomsClient.deleteRoom(room.id), { statusCode: 404, code: "NotFound" });

  const now = Date.now();
  await assert.rejects(
    roomsClient.createRoom({ validFrom: new Date(now - 2 * HOUR_MS), validUntil: new Date(now - HOUR_MS) }),
    (error) => {
      assert.equal(error.name, "RestError");
      assert.equal(error.statusCode, 400);
      assert.equal(error.code, "BadRequest");
      assert.deepEqual(error.details.error.details, [
        { code: "BadArgument", message: "The time range end is in the past.", target: "ValidUntil" },
      ]);
      return true;
    },
  );
});

if (plainHttp) {
  test("without allowInsecureConnection the SDK refuses an http endpoint before sending anything", async () => {
    const strictClient = new RoomsClient(connectionString);
    await assert.rejects(strictClient.getRoom("12345678901234567"), /allowInsecureConnection/);
  });
}
