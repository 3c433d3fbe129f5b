//! RFC 4475 "SIP Torture Test Messages": the valid ones parse with the meaning the RFC gives them,
//! the invalid ones are rejected with the error (and so the status code) the RFC expects.
//!
//! Messages are transcribed from RFC 4475 §3 with LF in the source turned into CRLF; where the RFC
//! body length depends on exact octets, the test asserts the declared Content-Length still matches.

use chaincall_sip::error::ParseError;
use chaincall_sip::header::{Contact, HeaderName, Method};
use chaincall_sip::message::Message;
use chaincall_sip::uri::{SipUri, UriError};

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

const SDP150: &str = "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.3\ns=-\nc=IN IP4 192.0.2.4\nt=0 0\nm=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n";

/// §3.1.1.1 wsinv: A Short Tortuous INVITE.
#[test]
fn wsinv() {
    let msg = format!(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n\
TO :\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n\
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\n  ;\n  tag = 98asjd8\n\
MaX-fOrWaRdS: 0068\n\
Call-ID: wsinv.ndaksdj@192.0.2.1\n\
Content-Length   : 150\n\
cseq: 0009\n  INVITE\n\
Via  : SIP  /   2.0\n /UDP\n    192.0.2.2;branch=390skdjuw\n\
s :\n\
NewFangledHeader:   newfangled value\n continued newfangled value\n\
UnknownHeaderWithUnusualValue: ;;,,;;,;\n\
Content-Type: application/sdp\n\
Route:\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n\
v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n  branch  =   z9hG4bK9ikj8  ,\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n z9hG4bK30239\n\
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\n      newvalue ;\n  secondparam ; q = 0.33\n\n{SDP150}"
    );
    let raw = crlf(&msg);
    let m = Message::parse(&raw).expect("wsinv is valid");
    assert_eq!(m.body().len(), 150);
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(m.from().unwrap().display, Some("J Rosenberg \\\\\\\""));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let h = m
        .headers()
        .iter()
        .find(|h| h.raw_name == "NewFangledHeader")
        .unwrap();
    assert_eq!(h.unfolded(), "newfangled value continued newfangled value");
    let Contact::Addr(c) = m.contacts().next().unwrap() else {
        panic!("not *")
    };
    assert_eq!(c.uri, "sip:jdrosen@example.com");
    assert_eq!(c.params.value("newparam"), Some("newvalue"));
    assert_eq!(c.params.get("secondparam"), Some(None));
    assert_eq!(c.params.value("q"), Some("0.33"));
    assert_eq!(m.header_value(HeaderName::Subject), Some(""));
    assert!(m.routes().next().unwrap().uri.ends_with("unknown-no-value"));
}

/// §3.1.1.2 intmeth: Wide Range of Valid Characters.
#[test]
fn intmeth() {
    let raw = crlf(
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n\
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n\
To: \"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n\
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.\n\
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n\
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n\
Max-Forwards: 255\n\
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}\n\
Content-Length: 0\n\n",
    );
    let m = Message::parse(&raw).expect("intmeth is valid");
    assert_eq!(
        m.method(),
        Some(Method::Other("!interesting-Method0123456789_*+`.%indeed'~"))
    );
    assert_eq!(m.from().unwrap().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(m.max_forwards(), Some(255));
}

/// §3.1.1.3 esc01 and §3.1.1.4 escnull: escapes, including %00, are legal in URIs.
#[test]
fn esc01_escnull() {
    let raw = crlf(&format!(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n\
To: sip:%75se%72@example.com\n\
From: <sip:I%20have%20spaces@example.net>;tag=938\n\
Max-Forwards: 87\n\
i: esc01.239409asdfakjkn23onasd0-3234\n\
CSeq: 234234 INVITE\n\
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\n\
C: application/sdp\n\
Contact:\n  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n\
Content-Length: 150\n\n{SDP150}"
    ));
    let m = Message::parse(&raw).expect("esc01 is valid");
    let u = SipUri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(u.user, Some("sips%3Auser%40example.com"));
    assert_eq!(m.content_type(), Some("application/sdp"));
    let raw = crlf(
        "REGISTER sip:example.com SIP/2.0\n\
To: sip:null-%00-null@example.com\n\
From: sip:null-%00-null@example.com;tag=839923423\n\
Max-Forwards: 70\n\
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n\
CSeq: 14398234 REGISTER\n\
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n\
Contact: <sip:%00@host5.example.com>\n\
Contact: <sip:%00%00@host5.example.com>\n\
L:0\n\n",
    );
    let m = Message::parse(&raw).expect("escnull is valid");
    assert_eq!(m.contacts().count(), 2);
}

/// §3.1.1.5 esc02: % that is not an escape, in method and header names.
#[test]
fn esc02() {
    let raw = crlf(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0\n\
To: \"%Z%45\" <sip:resource@example.com>\n\
From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23\n\
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n\
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n\
CSeq: 29344 RE%47IST%45R\n\
Max-Forwards: 70\n\
Contact: <sip:alias1@host1.example.com>\n\
C%6Fntact: <sip:alias2@host2.example.com>\n\
Contact: <sip:alias3@host3.example.com>\n\
l: 0\n\n",
    );
    let m = Message::parse(&raw).expect("esc02 is valid");
    assert_eq!(m.method(), Some(Method::Other("RE%47IST%45R")));
    // "C%6Fntact" is an unknown extension header, not a Contact.
    assert_eq!(m.contacts().count(), 2);
}

/// §3.1.1.6 lwsdisp and §3.1.1.9 semiuri.
#[test]
fn lwsdisp_semiuri() {
    let raw = crlf(
        "OPTIONS sip:user@example.com SIP/2.0\n\
To: sip:user@example.com\n\
From: caller<sip:caller@example.com>;tag=323\n\
Max-Forwards: 70\n\
Call-ID: lwsdisp.1234abcd@funky.example.com\n\
CSeq: 60 OPTIONS\n\
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n\
l: 0\n\n",
    );
    let m = Message::parse(&raw).expect("lwsdisp is valid");
    assert_eq!(m.from().unwrap().display, Some("caller"));
    let raw = crlf(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n\
To: sip:j_user@example.com\n\
From: sip:caller@example.org;tag=33242\n\
Max-Forwards: 3\n\
Call-ID: semiuri.0ha0isndaksdj\n\
CSeq: 8 OPTIONS\n\
Accept: application/sdp, application/pkcs7-mime,\n      multipart/mixed, multipart/signed,\n      message/sip, message/sipfrag\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\n\
l: 0\n\n",
    );
    let m = Message::parse(&raw).expect("semiuri is valid");
    assert_eq!(
        SipUri::parse(m.request_uri().unwrap()).unwrap().user,
        Some("user;par=u%40example.net")
    );
    assert_eq!(m.values(HeaderName::Accept).count(), 6);
}

/// §3.1.1.7 longreq: long values and many Via lines in mixed case and compact form.
#[test]
fn longreq() {
    let long = "long".repeat(40);
    let mut vias = String::new();
    for (i, name) in [
        "Via", "v", "V", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v  ",
    ]
    .iter()
    .enumerate()
    {
        vias.push_str(&format!("{name}: SIP/2.0/TCP sip{}.example.com\n", 33 - i));
    }
    let raw = crlf(&format!(
        "INVITE sip:user@example.com SIP/2.0\n\
To: \"I have a user name of extreme extreme extreme extreme extreme extreme extreme extreme extreme extreme  proportion\" <sip:user@example.com:6000;unknownparam1=very{long}value;longparamname{long}=shortvalue;very{long}ParameterNameWithNoValue>\n\
F: sip:amazinglylongcallername{long}@example.net;tag=12982{}424;unknownheaderparamname{long}=unknowheaderparamvalue{long};unknownValuelessparamname{long}\n\
Call-ID: longreq.one{}longcallid\n\
CSeq: 3882340 INVITE\n\
Unknown-{long}-Name:unknown-{long}-value;unknown-{long}-parameter-name = unknown-{long}-parameter-value\n\
{vias}\
Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{long}branchvalue\n\
Max-Forwards: 70\n\
Contact: <sip:amazinglylongcallername{long}@host5.example.net>\n\
Content-Type: application/sdp\n\
l: 150\n\n{SDP150}",
        "98".repeat(100),
        "really".repeat(20)
    ));
    let m = Message::parse(&raw).expect("longreq is valid");
    assert_eq!(m.vias().count(), 13);
    assert_eq!(m.vias().last().unwrap().received(), Some("192.0.2.5"));
    assert!(m.to().unwrap().uri.len() > 400);
}

/// §3.1.1.8 dblreq: octets after Content-Length in a datagram are ignored (RFC 3261 §18.3).
#[test]
fn dblreq() {
    let raw = crlf(&format!(
        "REGISTER sip:example.com SIP/2.0\n\
To: sip:j.user@example.com\n\
From: sip:j.user@example.com;tag=43251j3j324\n\
Max-Forwards: 8\n\
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n\
Contact: sip:j.user@host.example.com\n\
CSeq: 8 REGISTER\n\
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n\
Content-Length: 0\n\n\
INVITE sip:joe@example.com SIP/2.0\n\
t: sip:joe@example.com\n\
From: sip:caller@example.net;tag=141334\n\
Max-Forwards: 8\n\
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n\
CSeq: 8 INVITE\n\
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n\
Content-Type: application/sdp\n\
Content-Length: 150\n\n{SDP150}"
    ));
    let m = Message::parse(&raw).expect("dblreq is valid");
    assert_eq!(m.method(), Some(Method::Register));
    assert!(m.body().is_empty());
    assert!(m.wire_len() < raw.len());
}

/// §3.1.1.10 transports, §3.1.1.12 unreason, §3.1.1.13 noreason.
#[test]
fn transports_and_reasons() {
    let raw = crlf(
        "OPTIONS sip:user@example.com SIP/2.0\n\
To: sip:user@example.com\n\
From: <sip:caller@example.com>;tag=323\n\
Max-Forwards: 70\n\
Call-ID:  transports.kijh4akdnaqjkwendsasfdj\n\
Accept: application/sdp\n\
CSeq: 60 OPTIONS\n\
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\n\
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n\
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n\
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n\
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n\
l: 0\n\n",
    );
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        m.vias().map(|v| v.transport).collect::<Vec<_>>(),
        ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    );
    let raw = crlf(
        "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}\n\
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n\
Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n\
CSeq: 35 INVITE\n\
From: sip:user@example.com;tag=11141343\n\
To: sip:user@example.edu;tag=2229\n\
Content-Length: 0\n\n",
    );
    let m = Message::parse(&raw).expect("unreason is valid");
    assert_eq!(m.status(), Some(200));
    let raw = crlf(
        "SIP/2.0 100 \n\
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n\
Call-ID: noreason.asndj203insdf99223ndf\n\
CSeq: 35 INVITE\n\
From: <sip:user@example.com>;tag=39ansfi3\n\
To: <sip:user@example.edu>;tag=902jndnke3\n\
Content-Length: 0\n\n",
    );
    assert_eq!(
        Message::parse(&raw).expect("noreason is valid").status(),
        Some(100)
    );
}

/// §3.3.x application-layer cases that must parse (the TU then decides): unknown URI scheme in the
/// Request-URI (416), Max-Forwards 0 (483), Contact with parameters, RFC 2543 INVITE, `Contact: *`.
#[test]
fn application_layer_cases_parse() {
    let raw = crlf(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n\
To: sip:user@example.com\n\
From: sip:caller@example.net;tag=384\n\
Max-Forwards: 3\n\
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n\
CSeq: 3923423 OPTIONS\n\
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n\
Content-Length: 0\n\n",
    );
    let m = Message::parse(&raw).expect("unkscm parses");
    assert_eq!(
        SipUri::parse(m.request_uri().unwrap()),
        Err(UriError::Scheme)
    );
    let raw = crlf(
        "OPTIONS sip:user@example.com SIP/2.0\n\
To: sip:user@example.com\n\
From: sip:caller@example.net;tag=3ghsd41\n\
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\n\
CSeq: 39234321 OPTIONS\n\
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\n\
Max-Forwards: 0\n\
Content-Length: 0\n\n",
    );
    assert_eq!(
        Message::parse(&raw).expect("zeromf parses").max_forwards(),
        Some(0)
    );
    let raw = crlf(
        "REGISTER sip:example.com SIP/2.0\n\
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n\
Max-Forwards: 70\n\
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n\
To: sip:watson@example.com\n\
Call-ID: cparam01.70710@saturn.example.com\n\
CSeq: 2 REGISTER\n\
Contact: sip:+19725552222@gw1.example.net;unknownparam\n\
l: 0\n\n",
    );
    let m = Message::parse(&raw).expect("cparam01 parses");
    let Contact::Addr(c) = m.contacts().next().unwrap() else {
        panic!()
    };
    // Without <>, the parameter belongs to the header, not the URI (RFC 3261 §20).
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net");
    assert_eq!(c.params.get("unknownparam"), Some(None));
    let raw = crlf(
        "INVITE sip:user@example.com SIP/2.0\n\
To: sip:j.user@example.com\n\
From: sip:caller@example.net;tag=134161461246\n\
Max-Forwards: 7\n\
Call-ID: inv2543.1717@host.example.com\n\
CSeq: 8 INVITE\n\
Via: SIP/2.0/UDP 192.0.2.15\n\
Contact: <sip:caller@host.example.net>\n\
Content-Type: application/sdp\n\
Content-Length: 0\n\n",
    );
    assert!(
        Message::parse(&raw)
            .expect("inv2543 parses")
            .top_via()
            .unwrap()
            .branch()
            .is_none()
    );
}

fn reject(msg: &str) -> ParseError {
    let raw = crlf(msg);
    Message::parse(&raw).expect_err("message must be rejected")
}

const TAIL: &str = "To: sip:j.user@example.com\nFrom: sip:caller@example.net;tag=134161461246\nMax-Forwards: 7\nCall-ID: x.1717@host.example.com\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\n";

/// §3.1.2.1 badinv01, §3.1.2.2 clerr, §3.1.2.3 ncl.
#[test]
fn invalid_separators_and_lengths() {
    let e = reject(
        "OPTIONS sip:user@example.com SIP/2.0\n\
To: sip:j.user@example.com\n\
From: sip:caller@example.net;tag=134161461246\n\
Max-Forwards: 7\n\
Call-ID: badinv01.0ha0isndaksdjasdf3234nas\n\
CSeq: 8 OPTIONS\n\
Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n\
Contact: \"Joe\" <sip:joe@example.org>;;;;\n\
Content-Length: 0\n\n",
    );
    assert!(matches!(e, ParseError::Header { name: "Via", .. }), "{e:?}");
    let e = reject(&format!(
        "INVITE sip:user@example.com SIP/2.0\n{TAIL}CSeq: 8 INVITE\nContent-Type: application/sdp\nContent-Length: 9999\n\n{SDP150}"
    ));
    assert!(
        matches!(e, ParseError::Truncated { declared: 9999, .. }),
        "{e:?}"
    );
    assert_eq!(e.status_code(), 400);
    let e = reject(&format!(
        "INVITE sip:user@example.com SIP/2.0\n{TAIL}CSeq: 8 INVITE\nContent-Type: application/sdp\nContent-Length: -999\n\n{SDP150}"
    ));
    assert!(
        matches!(
            e,
            ParseError::Header {
                name: "Content-Length",
                ..
            }
        ),
        "{e:?}"
    );
}

/// §3.1.2.4 scalar02, §3.1.2.5 scalarlg, §3.1.2.19 bigcode: overlarge scalar values.
#[test]
fn invalid_scalars() {
    let e = reject(
        "REGISTER sip:example.com SIP/2.0\n\
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n\
To: <sip:user@example.com>\n\
From: <sip:user@example.com>;tag=239232jh3\n\
CSeq: 36893291588282376 REGISTER\n\
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n\
Max-Forwards: 300\n\
Expires: 1099511627776\n\
Contact: <sip:user@host129.example.com>\n  ;expires=280297596632815\n\
Content-Length: 0\n\n",
    );
    assert!(
        matches!(
            e,
            ParseError::Header {
                name: "CSeq" | "Max-Forwards",
                ..
            }
        ),
        "{e:?}"
    );
    let e = reject(
        "SIP/2.0 503 Service Unavailable\n\
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n\
To: <sip:user@example.com>\n\
From: <sip:other@example.net>;tag=2easdjfejw\n\
CSeq: 9292394834772304023312 OPTIONS\n\
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\n\
Retry-After: 949302838503028349304023988\n\
Warning: 1812 overture \"In Progress\"\n\
Content-Length: 0\n\n",
    );
    assert!(
        matches!(e, ParseError::Header { name: "CSeq", .. }),
        "{e:?}"
    );
    let e = reject(
        "SIP/2.0 4294967301 better not break the receiver\n\
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n\
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\n\
CSeq: 353494 INVITE\n\
From: <sip:user@example.com>;tag=39ansfi3\n\
To: <sip:user@example.edu>;tag=902jndnke3\n\
Content-Length: 0\n\n",
    );
    assert!(matches!(e, ParseError::StartLine(_)), "{e:?}");
}

/// §3.1.2.6 quotbal, §3.1.2.13 regbadct, §3.1.2.14 badaspec, §3.1.2.15 baddn.
#[test]
fn invalid_name_addr() {
    let e = reject(
        "INVITE sip:user@example.com SIP/2.0\n\
To: \"Mr. J. User <sip:j.user@example.com>\n\
From: sip:caller@example.net;tag=93334\n\
Max-Forwards: 10\n\
Call-ID: quotbal.aksdj\n\
Contact: <sip:caller@host59.example.net>\n\
CSeq: 8 INVITE\n\
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n\
Content-Length: 0\n\n",
    );
    assert!(matches!(e, ParseError::Header { name: "To", .. }), "{e:?}");
    let e = reject(
        "REGISTER sip:example.com SIP/2.0\n\
To: sip:user@example.com\n\
From: sip:user@example.com;tag=998332\n\
Max-Forwards: 70\n\
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\n\
CSeq: 1 REGISTER\n\
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n\
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n\
l: 0\n\n",
    );
    assert!(
        matches!(
            e,
            ParseError::Header {
                name: "Contact",
                ..
            }
        ),
        "{e:?}"
    );
    let e = reject(
        "OPTIONS sip:user@example.org SIP/2.0\n\
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\n\
Max-Forwards: 70\n\
From: \"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423\n\
To: \"Watson, Thomas\" < sip:t.watson@example.org >\n\
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\n\
Accept: application/sdp\n\
CSeq: 3923239 OPTIONS\n\
l: 0\n\n",
    );
    assert!(matches!(e, ParseError::Header { name: "To", .. }), "{e:?}");
    let e = reject(
        "OPTIONS sip:t.watson@example.org SIP/2.0\n\
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\n\
Max-Forwards:      70\n\
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n\
To:      Watson, Thomas <sip:t.watson@example.org>\n\
Call-ID: baddn.31415@c.example.com\n\
Accept: application/sdp\n\
CSeq:    3923239 OPTIONS\n\
l: 0\n\n",
    );
    assert!(
        matches!(
            e,
            ParseError::Header {
                name: "From" | "To",
                ..
            }
        ),
        "{e:?}"
    );
}

/// §3.1.2.7 ltgtruri, §3.1.2.8 lwsruri, §3.1.2.9 lwsstart, §3.1.2.10 trws, §3.1.2.11 escruri,
/// §3.1.2.16 badvers (505).
#[test]
fn invalid_request_lines() {
    for line in [
        "INVITE <sip:user@example.com> SIP/2.0",
        "INVITE sip:user@example.com; lr SIP/2.0",
        "INVITE  sip:user@example.com  SIP/2.0",
        "INVITE sip:user@example.com SIP/2.0 ",
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
    ] {
        let e = reject(&format!("{line}\n{TAIL}CSeq: 8 INVITE\nl: 0\n\n"));
        assert!(matches!(e, ParseError::StartLine(_)), "{line}: {e:?}");
        assert_eq!(e.status_code(), 400);
    }
    let e = reject(&format!(
        "OPTIONS sip:t.watson@example.org SIP/7.0\n{TAIL}CSeq: 8 OPTIONS\nl: 0\n\n"
    ));
    assert_eq!(e, ParseError::Version);
    assert_eq!(e.status_code(), 505);
}

/// §3.1.2.17 mismatch01, §3.1.2.18 mismatch02: CSeq method differs from the request method.
#[test]
fn invalid_cseq_mismatch() {
    let e = reject(&format!(
        "OPTIONS sip:user@example.com SIP/2.0\n{TAIL}CSeq: 8 INVITE\nl: 0\n\n"
    ));
    assert_eq!(e, ParseError::CSeqMismatch);
    let e = reject(&format!(
        "NEWMETHOD sip:user@example.com SIP/2.0\n{TAIL}CSeq: 8 INVITE\nl: 0\n\n"
    ));
    assert_eq!(e, ParseError::CSeqMismatch);
}

/// §3.3.1 insuf (missing headers), §3.3.10 multi01 (several single-value headers), §3.3.11 mcl01.
#[test]
fn invalid_header_sets() {
    let e = reject(
        "INVITE sip:user@example.com SIP/2.0\n\
CSeq: 193942 INVITE\n\
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n\
Content-Type: application/sdp\n\
l: 0\n\n",
    );
    assert!(matches!(e, ParseError::MissingHeader(_)), "{e:?}");
    let e = reject(
        "INVITE sip:user@company.com SIP/2.0\n\
Contact: <sip:caller@host25.example.net>\n\
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n\
Max-Forwards: 70\n\
CSeq: 5 INVITE\n\
Call-ID: multi01.98asdh@192.0.2.1\n\
CSeq: 59 INVITE\n\
Call-ID: multi01.98asdh@192.0.2.2\n\
From: sip:caller@example.com;tag=3413415\n\
To: sip:user@example.com\n\
To: sip:other@example.net\n\
From: sip:caller@example.net;tag=2923420123\n\
Content-Type: application/sdp\n\
l: 0\n\n",
    );
    assert!(matches!(e, ParseError::DuplicateHeader(_)), "{e:?}");
    let e = reject(&format!(
        "OPTIONS sip:user@example.com SIP/2.0\n{TAIL}CSeq: 8 OPTIONS\nContent-Length: 0\nContent-Length: 193\n\n"
    ));
    assert_eq!(e, ParseError::DuplicateHeader("Content-Length"));
}
