//! Property tests: decoding never panics, accepted bytes re-encode to themselves, generated messages
//! survive encode∘decode, and the responder never panics on mutated offers.

mod common;

use chaincall_mikey::Message;
use chaincall_mikey::message::{
    Cert, CertType, Chash, CsIdMap, DataType, Dh, DhGroup, EncrAlg, ErrorCode, GeneralExt,
    HashFunc, Header, Id, IdR, IdRole, IdType, Kemac, KeyData, KeyKind, KeyValidity, MacAlg,
    Payload, Pke, PkeCache, PolicyParam, PrfFunc, ProtType, SecurityPolicy, Sign, SignType,
    SrtpIdEntry, Timestamp, Verification, decode_key_data, decode_pke_key_data, encode_key_data,
    encode_pke_key_data,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Owned {
    Kemac(EncrAlg, Vec<u8>, MacAlg, Vec<u8>),
    Pke(PkeCache, Vec<u8>),
    Dh(DhGroup, Vec<u8>, OwnedKv),
    T(Timestamp),
    Id(IdType, Vec<u8>),
    IdR(IdRole, IdType, Vec<u8>),
    Cert(CertType, Vec<u8>),
    Chash(HashFunc, Vec<u8>),
    V(MacAlg, Vec<u8>),
    Sp(u8, Vec<(u8, Vec<u8>)>),
    Rand(Vec<u8>),
    Err(ErrorCode),
    Ext(u8, Vec<u8>),
}

#[derive(Debug, Clone)]
enum OwnedKv {
    Null,
    Spi(Vec<u8>),
    Interval(Vec<u8>, Vec<u8>),
}

impl OwnedKv {
    fn view(&self) -> KeyValidity<'_> {
        match self {
            Self::Null => KeyValidity::Null,
            Self::Spi(s) => KeyValidity::Spi(s),
            Self::Interval(a, b) => KeyValidity::Interval { from: a, to: b },
        }
    }
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn kv() -> impl Strategy<Value = OwnedKv> {
    prop_oneof![
        Just(OwnedKv::Null),
        bytes(8).prop_map(OwnedKv::Spi),
        (bytes(8), bytes(8)).prop_map(|(a, b)| OwnedKv::Interval(a, b)),
    ]
}

fn payload() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            pick(EncrAlg::ALL),
            bytes(80),
            pick(MacAlg::ALL),
            any::<[u8; 20]>()
        )
            .prop_map(|(e, d, m, mac)| Owned::Kemac(e, d, m, mac[..m.mac_len()].to_vec())),
        (pick(PkeCache::ALL), bytes(120)).prop_map(|(c, d)| Owned::Pke(c, d)),
        (pick(DhGroup::ALL), any::<u8>(), kv()).prop_map(|(g, b, kv)| Owned::Dh(
            g,
            vec![b; g.value_len()],
            kv
        )),
        prop_oneof![
            any::<u64>().prop_map(Timestamp::NtpUtc),
            any::<u64>().prop_map(Timestamp::Ntp),
            any::<u32>().prop_map(Timestamp::Counter),
        ]
        .prop_map(Owned::T),
        (pick(IdType::ALL), bytes(40)).prop_map(|(t, d)| Owned::Id(t, d)),
        (pick(IdRole::ALL), pick(IdType::ALL), bytes(40)).prop_map(|(r, t, d)| Owned::IdR(r, t, d)),
        (pick(CertType::ALL), bytes(60)).prop_map(|(t, d)| Owned::Cert(t, d)),
        (pick(HashFunc::ALL), any::<u8>())
            .prop_map(|(h, b)| Owned::Chash(h, vec![b; h.hash_len()])),
        (pick(MacAlg::ALL), any::<[u8; 20]>())
            .prop_map(|(m, d)| Owned::V(m, d[..m.mac_len()].to_vec())),
        (
            any::<u8>(),
            proptest::collection::vec((any::<u8>(), bytes(4)), 0..14)
        )
            .prop_map(|(n, p)| Owned::Sp(n, p)),
        bytes(40).prop_map(Owned::Rand),
        pick(ErrorCode::ALL).prop_map(Owned::Err),
        (any::<u8>(), bytes(30)).prop_map(|(t, d)| Owned::Ext(t, d)),
    ]
}

#[derive(Debug, Clone)]
struct OwnedMessage {
    data_type: DataType,
    v: bool,
    prf: PrfFunc,
    csb_id: u32,
    entries: Vec<(u8, u32, u32)>,
    payloads: Vec<Owned>,
    sign: Option<(SignType, Vec<u8>)>,
}

fn message() -> impl Strategy<Value = OwnedMessage> {
    (
        pick(DataType::ALL),
        any::<bool>(),
        pick(PrfFunc::ALL),
        any::<u32>(),
        proptest::collection::vec(any::<(u8, u32, u32)>(), 0..4),
        proptest::collection::vec(payload(), 0..10),
        proptest::option::of((pick(SignType::ALL), bytes(100))),
    )
        .prop_map(
            |(data_type, v, prf, csb_id, entries, payloads, sign)| OwnedMessage {
                data_type,
                v,
                prf,
                csb_id,
                entries,
                payloads,
                sign,
            },
        )
}

fn view(m: &OwnedMessage) -> Message<'_> {
    let mut payloads: Vec<Payload<'_>> = m
        .payloads
        .iter()
        .map(|p| match p {
            Owned::Kemac(e, d, a, mac) => Payload::Kemac(Kemac {
                encr_alg: *e,
                encr_data: d,
                mac_alg: *a,
                mac,
            }),
            Owned::Pke(c, d) => Payload::Pke(Pke { cache: *c, data: d }),
            Owned::Dh(g, v, kv) => Payload::Dh(Dh {
                group: *g,
                value: v,
                kv: kv.view(),
            }),
            Owned::T(t) => Payload::T(*t),
            Owned::Id(t, d) => Payload::Id(Id {
                id_type: *t,
                data: d,
            }),
            Owned::IdR(r, t, d) => Payload::IdR(IdR {
                role: *r,
                id_type: *t,
                data: d,
            }),
            Owned::Cert(t, d) => Payload::Cert(Cert {
                cert_type: *t,
                data: d,
            }),
            Owned::Chash(h, d) => Payload::Chash(Chash {
                hash_func: *h,
                hash: d,
            }),
            Owned::V(a, d) => Payload::V(Verification {
                auth_alg: *a,
                ver_data: d,
            }),
            Owned::Sp(n, params) => Payload::Sp(SecurityPolicy {
                policy_no: *n,
                prot_type: ProtType::Srtp,
                params: params
                    .iter()
                    .map(|(t, v)| PolicyParam {
                        param_type: *t,
                        value: v,
                    })
                    .collect(),
            }),
            Owned::Rand(r) => Payload::Rand(r),
            Owned::Err(c) => Payload::Err(*c),
            Owned::Ext(t, d) => Payload::GeneralExt(GeneralExt {
                ext_type: *t,
                data: d,
            }),
        })
        .collect();
    if let Some((s_type, sig)) = &m.sign {
        payloads.push(Payload::Sign(Sign {
            s_type: *s_type,
            signature: sig,
        }));
    }
    Message {
        header: Header {
            data_type: m.data_type,
            v: m.v,
            prf: m.prf,
            csb_id: m.csb_id,
            cs_map: CsIdMap::SrtpId(
                m.entries
                    .iter()
                    .map(|&(policy_no, ssrc, roc)| SrtpIdEntry {
                        policy_no,
                        ssrc,
                        roc,
                    })
                    .collect(),
            ),
        },
        payloads,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_and_accepted_bytes_reencode_exactly(data in bytes(400)) {
        if let Ok(msg) = Message::decode(&data) {
            prop_assert_eq!(&msg.to_vec().unwrap(), &data);
        }
        if let Ok(items) = decode_key_data(&data, 0) {
            let mut out = Vec::new();
            encode_key_data(&items, &mut out).unwrap();
            prop_assert_eq!(&out, &data);
        }
    }

    #[test]
    fn header_prefixed_noise_never_panics(noise in bytes(300), next in any::<u8>()) {
        // Most random inputs die in the header; this puts noise behind a valid one.
        let mut data = vec![1, 2, next, 0, 0, 0, 0, 1, 0, 0];
        data.extend_from_slice(&noise);
        if let Ok(msg) = Message::decode(&data) {
            prop_assert_eq!(&msg.to_vec().unwrap(), &data);
        }
    }

    #[test]
    fn generated_messages_round_trip(m in message()) {
        let msg = view(&m);
        let bytes = msg.to_vec().unwrap();
        let back = Message::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &msg);
        let mut buf = vec![0u8; bytes.len()];
        prop_assert_eq!(msg.encode_to_slice(&mut buf).unwrap(), bytes.len());
        prop_assert_eq!(&buf, &bytes);
        if !bytes.is_empty() {
            let mut short = vec![0u8; bytes.len() - 1];
            prop_assert!(msg.encode_to_slice(&mut short).is_err());
        }
    }

    #[test]
    fn generated_key_data_round_trips(items in proptest::collection::vec(
        (any::<bool>(), bytes(40), proptest::option::of(bytes(20)), kv()), 0..4)) {
        let views: Vec<KeyData<'_>> = items.iter().map(|(tek, key, salt, kv)| KeyData {
            kind: if *tek { KeyKind::Tek } else { KeyKind::Tgk },
            key,
            salt: salt.as_deref(),
            kv: kv.view(),
        }).collect();
        let mut out = Vec::new();
        encode_key_data(&views, &mut out).unwrap();
        prop_assert_eq!(decode_key_data(&out, 0).unwrap(), views.clone());
        // PKE's `IDi || {TGK}` (RFC 3830 §3.2): round trip, and every truncation is an error.
        let idi = Id { id_type: IdType::Uri, data: b"sip:+15551230001@example.org" };
        let mut pke = Vec::new();
        match encode_pke_key_data(&idi, &views, &mut pke) {
            Ok(()) => {
                let (id, keys) = decode_pke_key_data(&pke, 0).unwrap();
                prop_assert_eq!((id, keys), (idi, views));
                for len in 0..pke.len() {
                    prop_assert!(decode_pke_key_data(&pke[..len], 0).is_err());
                }
            }
            Err(_) => prop_assert!(views.is_empty()),
        }
    }

    #[test]
    fn responder_never_panics_on_mutated_offers(
        mode in 0usize..3,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let w = common::World::new();
        let caller = match mode { 0 => w.pke(true), 1 => w.dh(), _ => w.psk(true) };
        let original = caller.offer().to_vec();
        let mut offer = original.clone();
        for (at, x) in flips {
            let n = offer.len();
            offer[at % n] ^= x | 1;
        }
        if let Some(c) = cut {
            let n = offer.len();
            offer.truncate(c % n);
        }
        // Two flips of one byte by the same value cancel out: that offer is the original.
        prop_assume!(offer != original);
        // Every mutation is refused (flips change signed or MACed bytes), never a panic; the
        // check a phone makes before ringing refuses it as well.
        prop_assert!(w.responder().handle_offer(&offer, &w.dir, w.now).is_err());
        prop_assert!(w.responder().verify_offer(&offer, None, &w.dir, w.now).is_err());
    }
}
