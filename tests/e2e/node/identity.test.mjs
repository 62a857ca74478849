// Every operation of the ACS Identity API through the official `@azure/communication-identity`, unmodified, against
// openrooms; tokens parsed by `@azure/communication-common` and verified with the server's JWKS by Node's crypto.
// Run by tests/e2e/test_node_sdk.py, which starts the server and sets:
//   OPENROOMS_TEST_CONNECTION_STRING  endpoint=https://127.0.0.1:<port>/;accesskey=<key>
//   NODE_EXTRA_CA_CERTS               the server's local CA, as a user trusts it
import assert from "node:assert/strict";
import { createPublicKey, verify } from "node:crypto";
import { test } from "node:test";

import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { RoomsClient } from "@azure/communication-rooms";

const connectionString = process.env.OPENROOMS_TEST_CONNECTION_STRING;
assert.ok(connectionString, "OPENROOMS_TEST_CONNECTION_STRING must be set (tests/e2e/test_node_sdk.py sets it)");
const endpoint = connectionString.match(/endpoint=([^;]+)/i)[1];

// The SDK pipeline refuses plain http unless told otherwise; HTTPS (openrooms' default) needs no option at all.
const plainHttp = endpoint.toLowerCase().startsWith("http://");
const clientOptions = plainHttp ? { allowInsecureConnection: true } : {};
const identityClient = new CommunicationIdentityClient(connectionString, clientOptions);

const USER_ID = /^8:acs:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DEFAULT_LIFETIME_SECONDS = 24 * 60 * 60;

/** The JWT's header and claims, decoded as base64url as any JWT reader does. */
function decodeJwt(token) {
  const [header, payload] = token.split(".").slice(0, 2).map((part) => JSON.parse(Buffer.from(part, "base64url")));
  return { header, payload };
}

/** `expiresOn` is a Date, and exactly the token's `exp`; the lifetime is `exp - iat`. */
function assertTokenShape(accessToken, user, scopes, lifetimeSeconds) {
  assert.equal(typeof accessToken.token, "string");
  assert.ok(accessToken.expiresOn instanceof Date, "expiresOn is deserialized to a Date");
  const { header, payload } = decodeJwt(accessToken.token);
  assert.equal(header.alg, "RS256");
  assert.equal(header.typ, "JWT");
  assert.equal(accessToken.expiresOn.getTime(), payload.exp * 1000);
  assert.equal(payload.exp - payload.iat, lifetimeSeconds);
  assert.equal(payload.skypeid, user.communicationUserId.slice("8:".length));
  assert.equal(payload.acsScope, scopes.join(","));
  return payload;
}

let jwksCache;
/** The server's signing keys, fetched without any signature as a token verifier would. */
async function jwks() {
  if (!jwksCache) {
    const response = await fetch(new URL(".well-known/jwks.json", endpoint));
    assert.equal(response.status, 200);
    jwksCache = await response.json();
  }
  return jwksCache;
}

/** Whether the RS256 signature of `token` verifies against the JWKS key its `kid` names. */
async function signatureVerifies(token) {
  const { header } = decodeJwt(token);
  const jwk = (await jwks()).keys.find((key) => key.kid === header.kid);
  assert.ok(jwk, `the JWKS has the key ${header.kid}`);
  const [encodedHeader, encodedPayload, signature] = token.split(".");
  return verify(
    "RSA-SHA256",
    Buffer.from(`${encodedHeader}.${encodedPayload}`),
    createPublicKey({ key: jwk, format: "jwk" }),
    Buffer.from(signature, "base64url"),
  );
}

/**
 * openrooms' own admission check (`POST /rooms/{id}:join`, not an ACS operation), made with a user's token: the one
 * place where revocation and deletion show, since a signature check alone cannot see them.
 */
async function join(roomId, token) {
  const url = new URL(`rooms/${roomId}:join?api-version=2026-11-01-openrooms`, endpoint);
  const response = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json() };
}

async function rejectsWith(promise, statusCode, code, message) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.name, "RestError");
    assert.equal(error.statusCode, statusCode);
    assert.equal(error.code, code);
    if (message !== undefined) assert.equal(error.message, message);
    return true;
  });
}

test("createUser: an ACS user id, new each time", async () => {
  const first = await identityClient.createUser();
  const second = await identityClient.createUser();
  assert.deepEqual(Object.keys(first), ["communicationUserId"]);
  assert.match(first.communicationUserId, USER_ID);
  assert.match(second.communicationUserId, USER_ID);
  assert.notEqual(first.communicationUserId, second.communicationUserId);
  // Same resource id, different user part.
  assert.equal(first.communicationUserId.split("_")[0], second.communicationUserId.split("_")[0]);
});

test("createUserAndToken: the default 24-hour token, and tokenExpiresInMinutes: 60", async () => {
  const created = await identityClient.createUserAndToken(["voip"]);
  assert.match(created.user.communicationUserId, USER_ID);
  assertTokenShape(created, created.user, ["voip"], DEFAULT_LIFETIME_SECONDS);

  const hourLong = await identityClient.createUserAndToken(["voip"], { tokenExpiresInMinutes: 60 });
  assert.notEqual(hourLong.user.communicationUserId, created.user.communicationUserId);
  assertTokenShape(hourLong, hourLong.user, ["voip"], 60 * 60);
});

test("getToken: several scopes, a lifetime, and lifetimes out of range", async () => {
  const user = await identityClient.createUser();
  const token = await identityClient.getToken(user, ["chat", "voip"]);
  assert.deepEqual(Object.keys(token).sort(), ["expiresOn", "token"]);
  assertTokenShape(token, user, ["chat", "voip"], DEFAULT_LIFETIME_SECONDS);

  const bounded = await identityClient.getToken(user, ["chat"], { tokenExpiresInMinutes: 1440 });
  assertTokenShape(bounded, user, ["chat"], 1440 * 60);

  for (const minutes of [1441, 59]) {
    await rejectsWith(
      identityClient.getToken(user, ["chat", "voip"], { tokenExpiresInMinutes: minutes }),
      400,
      "ValidationError",
      `ExpiresInMinutes value ${minutes} is invalid. Value must be within the [60, 1440] interval.`,
    );
  }
  await rejectsWith(
    identityClient.createUserAndToken(["voip"], { tokenExpiresInMinutes: 1441 }),
    400,
    "ValidationError",
    "ExpiresInMinutes value 1441 is invalid. Value must be within the [60, 1440] interval.",
  );
  // As the JS SDK's own tests assert of the real service.
  await rejectsWith(identityClient.getToken(user, []), 400, "ValidationError",
    "Invalid scopes - Scopes field is required.");
});

test("a user of another resource: 401 IdentityNotOwned, as the JS SDK's own tests assert", async () => {
  const fakeUser = {
    communicationUserId: "8:acs:00000000-0000-0000-0000-000000000000_00000000-0000-0000-0000-000000000000",
  };
  const notOwned = "Provided identity doesn't belong to the resource.";
  await rejectsWith(identityClient.getToken(fakeUser, ["chat", "voip"]), 401, "IdentityNotOwned", notOwned);
  await rejectsWith(identityClient.revokeTokens(fakeUser), 401, "IdentityNotOwned", notOwned);
  await rejectsWith(identityClient.deleteUser(fakeUser), 401, "IdentityNotOwned", notOwned);
});

test("AzureCommunicationTokenCredential parses the token and reports its expiry", async () => {
  const { token, expiresOn } = await identityClient.createUserAndToken(["chat"], { tokenExpiresInMinutes: 90 });
  const credential = new AzureCommunicationTokenCredential(token);
  const parsed = await credential.getToken();
  assert.equal(parsed.token, token);
  assert.equal(parsed.expiresOnTimestamp, expiresOn.getTime());
  assert.equal(parsed.expiresOnTimestamp, decodeJwt(token).payload.exp * 1000);
  credential.dispose();
});

test("tokens verify against the server's JWKS with Node's crypto; an altered token does not", async () => {
  const { token, user } = await identityClient.createUserAndToken(["chat", "voip"]);
  const other = await identityClient.getToken(user, ["voip"], { tokenExpiresInMinutes: 60 });
  assert.equal(await signatureVerifies(token), true);
  assert.equal(await signatureVerifies(other.token), true);

  // Another token's claims under this token's signature: the check is a real one.
  const [header, , signature] = token.split(".");
  const forged = [header, other.token.split(".")[1], signature].join(".");
  assert.equal(await signatureVerifies(forged), false);

  for (const key of (await jwks()).keys) {
    assert.equal(key.kty, "RSA");
    assert.equal(key.d, undefined, "the JWKS holds no private key material");
  }
});

test("revokeTokens, then deleteUser: a deleted user gets no token and cannot be revoked or deleted again", async () => {
  const { user, token: revokedToken } = await identityClient.createUserAndToken(["voip"]);
  const roomsClient = new RoomsClient(connectionString, clientOptions);
  const room = await roomsClient.createRoom({ participants: [{ id: user, role: "Presenter" }] });
  assert.equal((await join(room.id, revokedToken)).status, 200, "a fresh token joins the room");

  assert.equal(await identityClient.revokeTokens(user), undefined);
  const afterRevoke = await join(room.id, revokedToken);
  assert.equal(afterRevoke.status, 401);
  assert.equal(afterRevoke.body.error.message, "The access token is not valid: it was revoked.");
  assert.equal(await identityClient.revokeTokens(user), undefined, "revoking again is no error");

  // Revocation covers tokens issued until then; the user gets new ones, and they work.
  const fresh = await identityClient.getToken(user, ["voip"]);
  assertTokenShape(fresh, user, ["voip"], DEFAULT_LIFETIME_SECONDS);
  assert.equal((await join(room.id, fresh.token)).status, 200);

  assert.equal(await identityClient.deleteUser(user), undefined);
  const afterDelete = await join(room.id, fresh.token);
  assert.equal(afterDelete.status, 401);
  assert.equal(afterDelete.body.error.message, "The access token is not valid: its user was deleted.");
  assert.equal(await signatureVerifies(fresh.token), true, "the signature alone still checks out");
  await roomsClient.deleteRoom(room.id);

  const gone = `Identity ${user.communicationUserId} does not exist (or was deleted).`;
  await rejectsWith(identityClient.getToken(user, ["chat", "voip"]), 404, "IdentityNotFound", gone);
  await rejectsWith(identityClient.revokeTokens(user), 404, "IdentityNotFound", gone);
  await rejectsWith(identityClient.deleteUser(user), 404, "IdentityNotFound", gone);
});

test("getTokenForTeamsUser: 501 NotSupported, as there is no Microsoft Entra ID here", async () => {
  await rejectsWith(
    identityClient.getTokenForTeamsUser({
      teamsUserAadToken: "eyJhbGciOiJub25lIn0.e30.",
      clientId: "00000000-0000-0000-0000-000000000001",
      userObjectId: "00000000-0000-0000-0000-000000000002",
    }),
    501,
    "NotSupported",
  );
});

if (plainHttp) {
  test("without allowInsecureConnection the SDK refuses an http endpoint before sending anything", async () => {
    await assert.rejects(new CommunicationIdentityClient(connectionString).createUser(), /allowInsecureConnection/);
  });
}
