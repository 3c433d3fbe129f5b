//! `getClient` on the embedded chain: one full EVM call per lookup (encode, execute the real
//! contract bytecode against the latest state, decode). Target: under 50 µs per lookup.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use chaincall_chain::{ClientId, EmbeddedChain, KeystoreChain, dev_signer, receipt_hash};
use chaincall_identity::{IdentityKey, IdentityName, KeyStatus};
use criterion::{Criterion, criterion_group, criterion_main};

fn get_client(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    let chain = EmbeddedChain::default();
    let owner = dev_signer(0);
    let phone = dev_signer(1);
    let id = ClientId::of(&IdentityName::parse("+15551234567").expect("valid number"));
    let contract = runtime.block_on(async {
        let contract = chain.deploy_keystore(&owner).await.expect("deploy");
        let key = IdentityKey::generate().public();
        let rh = receipt_hash(b"bench receipt");
        chain
            .add_client_key(contract, &phone, id, &key, rh)
            .await
            .expect("add");
        chain
            .approve_client(contract, &owner, id, rh)
            .await
            .expect("approve");
        contract
    });
    c.bench_function("embedded getClient (approved entry)", |b| {
        b.iter(|| {
            let entry = runtime
                .block_on(chain.get_client(black_box(contract), black_box(id)))
                .expect("lookup");
            assert_eq!(entry.status, KeyStatus::Approved);
            entry
        })
    });
}

criterion_group!(benches, get_client);
criterion_main!(benches);
