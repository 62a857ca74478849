// A certified OpenID Provider (panva's oidc-provider) for the console's sign-in tests, on loopback, with one
// confidential client and the provider's own development login and consent pages (any login, any password).
// Arguments: issuer URL (http://localhost:<port>), redirect URI, client id, client secret, role. Prints
// "listening" once it answers; stopped by its pid.
import http from 'node:http';
import Provider from 'oidc-provider';

const [issuer, redirectUri, clientId, clientSecret, role] = process.argv.slice(2);
const port = Number(new URL(issuer).port);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Every login is a person named after it, who carries the console's role.
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: `${id[0].toUpperCase()}${id.slice(1)} Lovelace`,
                           email: `${id}@example.com`, roles: [role] }),
  }),
  claims: { openid: ['sub', 'roles'], profile: ['name'], email: ['email'] },
  // The scopes' claims in the ID token itself (the console reads no userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['openrooms-tests-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => console.log('listening'));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
