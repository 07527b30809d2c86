//! Per-trader authentication: HS256 JSON Web Tokens.
//!
//! `jsonwebtoken` does the token format and the claim checks (signature,
//! algorithm, expiry); its crypto is pluggable, and HS256 is all we need, so
//! the provider below signs with `hmac` + `sha2` (which cachekit already
//! builds) instead of pulling in RSA and elliptic curves.
//!
//! A load generator or a script gets a token from `POST /api/v1/login`, or
//! mints one with the same secret (`JWT_SECRET`): `{"sub": "<user id>",
//! "exp": <unix seconds>}` signed HS256.

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation, decode, encode,
};
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The trader's id, as a string (RFC 7519).
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

/// Issues and checks tokens.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

/// Why a request is not authenticated.
#[derive(Debug)]
pub struct Unauthorized(pub &'static str);

impl Auth {
    /// Tokens signed with `secret`, valid for `lifetime`.
    pub fn new(secret: &[u8], lifetime: Duration) -> Auth {
        install_hs256();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
        }
    }

    /// How long a token lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A token for `user_id`.
    pub fn issue(&self, user_id: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + self.lifetime.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The trader a bearer token belongs to.
    pub fn verify(&self, token: &str) -> Result<i64, Unauthorized> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => Unauthorized("the token has expired"),
                    ErrorKind::InvalidSignature => Unauthorized("the token's signature is invalid"),
                    ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                        Unauthorized("the token must be signed with HS256")
                    }
                    _ => Unauthorized("the token is malformed"),
                }
            })?;
        data.claims
            .sub
            .parse()
            .map_err(|_| Unauthorized("the token's subject is not a trader id"))
    }
}

/// Installs the HS256-only provider, once per process.
fn install_hs256() {
    static HS256: CryptoProvider = CryptoProvider {
        signer_factory: |alg, key| Ok(Box::new(Hs256::new(*alg, key.family(), key.as_bytes())?)),
        verifier_factory: |alg, key| {
            Ok(Box::new(Hs256::new(
                *alg,
                key.family(),
                key.try_get_as_bytes()?,
            )?))
        },
        key_utils: KeyUtils::new_unimplemented(),
    };
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another provider may be installed already (a host application's);
        // it signs HS256 as well.
        let _ = HS256.install_default();
    });
}

/// HMAC-SHA256 signing and verification.
struct Hs256(HmacSha256);

impl Hs256 {
    fn new(alg: Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Hs256, JwtError> {
        if alg != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?;
        Ok(Hs256(mac))
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant time.
        mac.verify_slice(signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}
