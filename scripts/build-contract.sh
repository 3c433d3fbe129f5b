#!/usr/bin/env bash
# Compiles contracts/Keystore.sol with the pinned solcjs (npm `solc`, tools/package.json) and fixed
# settings, and writes the committed artifact contracts/Keystore.json (ABI, creation and runtime
# bytecode). The output is deterministic: crates/chain's artifact test reruns this script and compares
# the result with the committed file byte for byte.
#
# Usage: scripts/build-contract.sh [--out FILE]    (default: contracts/Keystore.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out=contracts/Keystore.json
if [ "${1:-}" = "--out" ]; then out=$2; fi

# solcjs is a thin CLI over this module; calling the module directly keeps its banner lines
# (">>> Cannot retry compilation with SMT ...") out of the JSON.
if [ ! -f tools/node_modules/solc/package.json ] || [ ! -x tools/node_modules/.bin/solcjs ]; then
  echo "error: solcjs is missing (tools/node_modules/solc); run (cd tools && npm ci) or scripts/test.sh" >&2
  exit 1
fi

node - "$out" <<'JS'
const fs = require("fs");
const path = require("path");
const solc = require(path.resolve("tools/node_modules/solc"));
const out = process.argv[2];
// Settings are part of the artifact: changing any of them changes the bytecode.
// evmVersion cancun runs on every current chain (mainnet, L2s, anvil, revm).
const settings = {
  optimizer: { enabled: true, runs: 1000 },
  evmVersion: "cancun",
  outputSelection: { "Keystore.sol": { Keystore: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const input = {
  language: "Solidity",
  sources: { "Keystore.sol": { content: fs.readFileSync("contracts/Keystore.sol", "utf8") } },
  settings,
};
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = result.errors || [];
for (const p of problems) console.error(p.formattedMessage || p.message);
if (problems.some((p) => p.severity === "error")) process.exit(1);
const c = result.contracts["Keystore.sol"].Keystore;
const artifact = {
  contractName: "Keystore",
  source: "contracts/Keystore.sol",
  compiler: { name: "solcjs", version: solc.version(), optimizer: settings.optimizer, evmVersion: settings.evmVersion },
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
  deployedBytecode: "0x" + c.evm.deployedBytecode.object,
};
fs.writeFileSync(out + ".tmp", JSON.stringify(artifact, null, 2) + "\n");
fs.renameSync(out + ".tmp", out);
console.error("wrote " + out + " (solc " + solc.version() + ")");
JS
