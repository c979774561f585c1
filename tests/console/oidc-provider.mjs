// A real OpenID provider on loopback for the single sign-on test (npm
// `oidc-provider`), with one confidential client and fixed users whose ID
// tokens carry email and groups claims. Sign-in is the package's own
// development login form: any password is accepted for these users.
//
// Two users stand for a provider that misbehaves: the ID token issued for
// `wrong-audience@school.test` names another client as its audience, and
// the one for `expired@school.test` expired an hour ago. Both are still
// signed with the provider's published key, so only the relying party's
// claim checks can refuse them.
//
// Environment: PORT, REDIRECT_URIS (space-separated), CLIENT_SECRET.
// Prints `READY <issuer>` once listening.
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };

const users = {
  'dsl@school.test': ['Safeguarding'],
  'head@school.test': ['Office'],
  'visitor@school.test': ['Visitors'],
  'wrong-audience@school.test': ['Safeguarding'],
  'expired@school.test': ['Safeguarding'],
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'tutela-console',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: process.env.REDIRECT_URIS.split(' '),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // Put the scopes' claims in the ID token (as Google and Entra ID do).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['oidc test cookie key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    if (!(id in users)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, groups: users[id] };
      },
    };
  },
});

// The misbehaving provider: re-sign the two test users' ID tokens, changed.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
  const claims = jose.decodeJwt(ctx.body.id_token);
  const now = Math.floor(Date.now() / 1000);
  if (claims.email === 'wrong-audience@school.test') {
    claims.aud = 'another-client';
    claims.azp = 'another-client';
  } else if (claims.email === 'expired@school.test') {
    claims.iat = now - 7200;
    claims.exp = now - 3600;
  } else {
    return;
  }
  ctx.body.id_token = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'test-key', typ: 'JWT' })
    .sign(privateKey);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
