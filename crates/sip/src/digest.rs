//! HTTP Digest for SIP (RFC 3261 §22.4, RFC 2617, RFC 7616) with the RFC 8760 algorithms MD5,
//! SHA-256 and SHA-512-256, Kamailio-compatible stored hashes, and stateless expiring nonces with a
//! nonce-count replay check.
//!
//! Kamailio's `auth_db` keeps `ha1 = MD5(username:realm:password)` and
//! `ha1b = MD5(username@domain:realm:password)` in the `subscriber` table (the latter for clients that
//! put `user@domain` in the digest username). RFC 8760 hashes need their own columns; chaincall
//! uses OpenSIPS' names `ha1_sha256` and `ha1_sha512t256`, and computes any of them from `password`
//! when the column is absent (Kamailio's `calculate_ha1`).

use std::collections::{HashMap, VecDeque};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Sha256, Sha512_256};
use subtle::ConstantTimeEq;

use crate::error::DigestError;
use crate::header::AuthHeader;

/// A digest algorithm (RFC 7616 §3.2, RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the SIP default when `algorithm` is absent).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-512/256 (RFC 7616, RFC 8760).
    Sha512_256,
}

impl Algorithm {
    /// Parses the `algorithm` value; returns the algorithm and whether it is a `-sess` variant.
    pub fn parse(s: &str) -> Result<(Algorithm, bool), DigestError> {
        let (base, sess) = match s.len().checked_sub(5) {
            Some(i) if s.is_char_boundary(i) && s[i..].eq_ignore_ascii_case("-sess") => {
                (&s[..i], true)
            }
            _ => (s, false),
        };
        let alg = if base.eq_ignore_ascii_case("MD5") {
            Algorithm::Md5
        } else if base.eq_ignore_ascii_case("SHA-256") {
            Algorithm::Sha256
        } else if base.eq_ignore_ascii_case("SHA-512-256") {
            Algorithm::Sha512_256
        } else {
            return Err(DigestError::Algorithm);
        };
        Ok((alg, sess))
    }

    /// The token used on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Lower-case hex of H(parts joined by ':').
    pub fn hash(&self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex::encode(d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
            Algorithm::Sha512_256 => run::<Sha512_256>(parts),
        }
    }
}

/// HA1 = H(username:realm:password) (RFC 7616 §3.4.2).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// Kamailio's `ha1b` column: MD5(username@domain:realm:password).
pub fn kamailio_ha1b(username: &str, domain: &str, realm: &str, password: &str) -> String {
    let user = format!("{username}@{domain}");
    ha1(Algorithm::Md5, &user, realm, password)
}

/// Digest credentials from an Authorization or Proxy-Authorization header (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: &'a str,
    /// `realm`.
    pub realm: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `uri` (the digest-uri).
    pub uri: &'a str,
    /// `response` (hex).
    pub response: &'a str,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// `-sess` variant.
    pub sess: bool,
    /// `cnonce`.
    pub cnonce: Option<&'a str>,
    /// `qop` (only `auth` is accepted).
    pub qop: Option<&'a str>,
    /// `nc`, parsed from 8 hex digits.
    pub nc: Option<u32>,
    /// `opaque`.
    pub opaque: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// Parses a Digest credentials header value.
    pub fn parse(h: &AuthHeader<'a>) -> Result<Credentials<'a>, DigestError> {
        if !h.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::Malformed("scheme is not Digest"));
        }
        let req = |n: &'static str| h.param(n).ok_or(DigestError::Malformed(n));
        let (algorithm, sess) = match h.param("algorithm") {
            Some(a) => Algorithm::parse(a)?,
            None => (Algorithm::Md5, false),
        };
        let qop = h.param("qop");
        if let Some(q) = qop
            && !q.eq_ignore_ascii_case("auth")
        {
            return Err(DigestError::Qop);
        }
        let nc = match h.param("nc") {
            Some(v) if v.len() == 8 => {
                Some(u32::from_str_radix(v, 16).map_err(|_| DigestError::Malformed("nc"))?)
            }
            Some(_) => return Err(DigestError::Malformed("nc")),
            None => None,
        };
        let cnonce = h.param("cnonce");
        // RFC 7616 §3.4: with qop, cnonce and nc are mandatory.
        if qop.is_some() && (cnonce.is_none() || nc.is_none()) {
            return Err(DigestError::Malformed("qop without cnonce/nc"));
        }
        Ok(Credentials {
            username: req("username")?,
            realm: req("realm")?,
            nonce: req("nonce")?,
            uri: req("uri")?,
            response: req("response")?,
            algorithm,
            sess,
            cnonce,
            qop,
            nc,
            opaque: h.param("opaque"),
        })
    }

    /// The expected response for a stored HA1 (hex) and the request method (RFC 7616 §3.4.1).
    pub fn expected_response(&self, ha1_hex: &str, method: &str) -> String {
        let alg = self.algorithm;
        let ha1 = if self.sess {
            alg.hash(&[
                ha1_hex.as_bytes(),
                self.nonce.as_bytes(),
                self.cnonce.unwrap_or("").as_bytes(),
            ])
        } else {
            ha1_hex.to_ascii_lowercase()
        };
        let ha2 = alg.hash(&[method.as_bytes(), self.uri.as_bytes()]);
        match (self.qop, self.nc, self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                let nc = format!("{nc:08x}");
                alg.hash(&[
                    ha1.as_bytes(),
                    self.nonce.as_bytes(),
                    nc.as_bytes(),
                    cnonce.as_bytes(),
                    qop.as_bytes(),
                    ha2.as_bytes(),
                ])
            }
            // RFC 2069 compatibility (RFC 2617 §3.2.2.1).
            _ => alg.hash(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }

    /// Checks the response in constant time.
    pub fn verify(&self, ha1_hex: &str, method: &str) -> bool {
        let expected = self.expected_response(ha1_hex, method);
        let got = self.response.to_ascii_lowercase();
        expected.len() == got.len() && bool::from(expected.as_bytes().ct_eq(got.as_bytes()))
    }
}

/// A parsed challenge (WWW-Authenticate / Proxy-Authenticate, RFC 7616 §3.3), for the UAC side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop` options offered, raw (`"auth,auth-int"`).
    pub qop: Option<&'a str>,
    /// `opaque`.
    pub opaque: Option<&'a str>,
    /// `stale=true`: the nonce expired, the password was right.
    pub stale: bool,
}

impl<'a> Challenge<'a> {
    /// Parses a Digest challenge.
    pub fn parse(h: &AuthHeader<'a>) -> Result<Challenge<'a>, DigestError> {
        if !h.scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::Malformed("scheme is not Digest"));
        }
        let (algorithm, _) = match h.param("algorithm") {
            Some(a) => Algorithm::parse(a)?,
            None => (Algorithm::Md5, false),
        };
        Ok(Challenge {
            realm: h.param("realm").ok_or(DigestError::Malformed("realm"))?,
            nonce: h.param("nonce").ok_or(DigestError::Malformed("nonce"))?,
            algorithm,
            qop: h.param("qop"),
            opaque: h.param("opaque"),
            stale: h
                .param("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// Builds the Authorization header value answering this challenge (RFC 7616 §3.4), with
    /// `qop=auth` when offered.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let h1 = ha1(self.algorithm, username, self.realm, password);
        let offers_auth = self
            .qop
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
        let creds = Credentials {
            username,
            realm: self.realm,
            nonce: self.nonce,
            uri,
            response: "",
            algorithm: self.algorithm,
            sess: false,
            cnonce: offers_auth.then_some(cnonce),
            qop: offers_auth.then_some("auth"),
            nc: offers_auth.then_some(nc),
            opaque: self.opaque,
        };
        let response = creds.expected_response(&h1, method);
        let mut v = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            self.realm,
            self.nonce,
            self.algorithm.as_str()
        );
        if offers_auth {
            v.push_str(&format!(", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }
}

/// The value of a WWW-Authenticate/Proxy-Authenticate challenge (RFC 7616 §3.3).
pub fn challenge_value(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut v = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        alg.as_str()
    );
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// Outcome of checking a nonce presented in credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us, fresh, and the nonce count is new.
    Valid,
    /// Issued by us but expired: challenge again with `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Forged, malformed, or for another realm.
    Invalid,
    /// The nonce count was seen before: a replay (RFC 7616 §3.4, §5.2).
    Replay,
}

/// Stateless nonces (`time || salt || HMAC-SHA256(secret, time || salt || realm)`), expiring after
/// `lifetime_secs`, plus a bounded table of nonce counts to reject replays. The salt is a
/// per-challenge counter, so two challenges issued in the same second never share a nonce (two
/// clients answering one nonce with `nc=1` would look like a replay).
///
/// Time is the caller's: `now_secs` is any monotonic seconds counter (the shell passes Unix time).
pub struct NonceManager {
    secret: [u8; 32],
    lifetime_secs: u64,
    seen: HashMap<String, u32>,
    order: VecDeque<(u64, String)>,
    max_tracked: usize,
    salt: u32,
}

impl std::fmt::Debug for NonceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("NonceManager")
            .field("lifetime_secs", &self.lifetime_secs)
            .field("tracked", &self.seen.len())
            .finish()
    }
}

impl NonceManager {
    /// A manager with a random `secret` from the caller, a lifetime, and a bound on tracked nonces
    /// (the oldest are forgotten first, and then rejected as invalid rather than accepted).
    pub fn new(secret: [u8; 32], lifetime_secs: u64, max_tracked: usize) -> Self {
        NonceManager {
            secret,
            lifetime_secs,
            seen: HashMap::new(),
            order: VecDeque::new(),
            max_tracked: max_tracked.max(1),
            salt: 0,
        }
    }

    fn mac(&self, ts: u64, salt: u32, realm: &str) -> [u8; 16] {
        let mut m =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(&ts.to_be_bytes());
        m.update(&salt.to_be_bytes());
        m.update(realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A fresh nonce for `realm` (56 hex characters), distinct from every other nonce issued.
    pub fn issue(&mut self, realm: &str, now_secs: u64) -> String {
        self.salt = self.salt.wrapping_add(1);
        let salt = self.salt;
        let n = format!(
            "{:016x}{:08x}{}",
            now_secs,
            salt,
            hex::encode(self.mac(now_secs, salt, realm))
        );
        self.forget_expired(now_secs);
        if self.order.len() >= self.max_tracked
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(n.clone(), 0);
        self.order.push_back((now_secs, n.clone()));
        n
    }

    fn forget_expired(&mut self, now_secs: u64) {
        while let Some((ts, _)) = self.order.front() {
            if now_secs.saturating_sub(*ts) <= self.lifetime_secs {
                break;
            }
            if let Some((_, n)) = self.order.pop_front() {
                self.seen.remove(&n);
            }
        }
    }

    /// Checks a nonce and its count. Counts must strictly increase per nonce; without qop (no nc)
    /// a nonce is single-use.
    pub fn check(
        &mut self,
        nonce: &str,
        realm: &str,
        nc: Option<u32>,
        now_secs: u64,
    ) -> NonceCheck {
        if nonce.len() != 56 || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let Ok(ts) = u64::from_str_radix(&nonce[..16], 16) else {
            return NonceCheck::Invalid;
        };
        let Ok(salt) = u32::from_str_radix(&nonce[16..24], 16) else {
            return NonceCheck::Invalid;
        };
        let Ok(mac) = hex::decode(&nonce[24..]) else {
            return NonceCheck::Invalid;
        };
        if !bool::from(mac.as_slice().ct_eq(&self.mac(ts, salt, realm))) || ts > now_secs {
            return NonceCheck::Invalid;
        }
        if now_secs - ts > self.lifetime_secs {
            return NonceCheck::Stale;
        }
        let Some(last) = self.seen.get_mut(nonce) else {
            // Authentic but no longer tracked (table bound hit, or server restart): ask again.
            return NonceCheck::Stale;
        };
        let nc = nc.unwrap_or(1);
        if nc <= *last {
            return NonceCheck::Replay;
        }
        *last = nc;
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_vector() {
        // RFC 2617 §3.5 (HTTP example; same computation): Mufasa / Circle Of Life.
        let h = AuthHeader::parse(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let c = Credentials::parse(&h).unwrap();
        let h1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(c.verify(&h1, "GET"));
        assert!(!c.verify(&h1, "POST"));
    }

    #[test]
    fn rfc7616_sha256_vector() {
        // RFC 7616 §3.9.1 (SHA-256): response 753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1.
        let h = AuthHeader::parse(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let c = Credentials::parse(&h).unwrap();
        let h1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert!(c.verify(&h1, "GET"));
    }

    #[test]
    fn answer_then_verify_all_algorithms() {
        for alg in [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256] {
            let v = challenge_value("example.com", "abc", alg, false);
            let h = AuthHeader::parse(&v).unwrap();
            let ch = Challenge::parse(&h).unwrap();
            let ans = ch.answer("REGISTER", "sip:example.com", "alice", "secret", "cn", 1);
            let ah = AuthHeader::parse(&ans).unwrap();
            let cr = Credentials::parse(&ah).unwrap();
            assert_eq!(cr.algorithm, alg);
            assert!(cr.verify(&ha1(alg, "alice", "example.com", "secret"), "REGISTER"));
            assert!(!cr.verify(&ha1(alg, "alice", "example.com", "wrong"), "REGISTER"));
        }
    }

    #[test]
    fn kamailio_columns() {
        // Same as MySQL's MD5('101:test.com:test123') in a Kamailio subscriber row.
        assert_eq!(
            ha1(Algorithm::Md5, "101", "test.com", "test123"),
            Algorithm::Md5.hash(&[b"101", b"test.com", b"test123"])
        );
        assert_eq!(
            kamailio_ha1b("101", "test.com", "test.com", "test123"),
            ha1(Algorithm::Md5, "101@test.com", "test.com", "test123")
        );
    }

    #[test]
    fn nonces_expire_and_counts_are_checked() {
        let mut m = NonceManager::new([7; 32], 30, 100);
        let n = m.issue("r", 1000);
        assert_eq!(m.check(&n, "r", Some(1), 1001), NonceCheck::Valid);
        assert_eq!(m.check(&n, "r", Some(1), 1002), NonceCheck::Replay);
        assert_eq!(m.check(&n, "r", Some(2), 1002), NonceCheck::Valid);
        assert_eq!(m.check(&n, "other", Some(3), 1002), NonceCheck::Invalid);
        assert_eq!(m.check(&n, "r", Some(3), 1031), NonceCheck::Stale);
        let mut forged = n.clone();
        forged.replace_range(40..41, if &n[40..41] == "0" { "1" } else { "0" });
        assert_eq!(m.check(&forged, "r", Some(9), 1002), NonceCheck::Invalid);
        assert_eq!(m.check("zz", "r", None, 1002), NonceCheck::Invalid);
        // A salt that was not MAC'd with this time is refused too.
        let mut resalted = n.clone();
        resalted.replace_range(23..24, if &n[23..24] == "0" { "1" } else { "0" });
        assert_eq!(m.check(&resalted, "r", Some(9), 1002), NonceCheck::Invalid);
    }

    #[test]
    fn two_challenges_in_one_second_get_distinct_nonces() {
        // Two clients challenged in the same second each answer with nc=1: both must pass.
        let mut m = NonceManager::new([7; 32], 30, 100);
        let a = m.issue("r", 1000);
        let b = m.issue("r", 1000);
        assert_ne!(a, b);
        assert_eq!(m.check(&a, "r", Some(1), 1000), NonceCheck::Valid);
        assert_eq!(m.check(&b, "r", Some(1), 1000), NonceCheck::Valid);
    }
}
