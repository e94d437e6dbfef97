#!/usr/bin/env node
// Compiles test/chain/contracts/*.sol with the pinned solc (npm `solc@0.8.37`, runs offline)
// and writes artifacts/<Contract>.json = {abi, bytecode, deployedBytecode} for every contract
// whose name equals its file name (helper files such as Common.sol produce no artifact).
// Settings: optimizer on (200 runs), evmVersion cancun, no metadata hash and no CBOR trailer,
// so the output is byte-for-byte reproducible (check_artifacts.sh relies on it).
//
// Usage: node build.js [--out DIR]   (default DIR = ./artifacts)
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const EXPECTED_SOLC = "0.8.37";
const root = __dirname;
const contractsDir = path.join(root, "contracts");

function parseArgs(argv) {
  let out = path.join(root, "artifacts");
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out" && i + 1 < argv.length) out = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]} (usage: node build.js [--out DIR])`);
  }
  return { out };
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + "+")) {
    throw new Error(`solc ${version} found, ${EXPECTED_SOLC} required (run npm ci in test/chain)`);
  }
  const files = fs.readdirSync(contractsDir).filter((f) => f.endsWith(".sol")).sort();
  const sources = {};
  for (const f of files) sources[f] = { content: fs.readFileSync(path.join(contractsDir, f), "utf8") };
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none", appendCBOR: false },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  let failed = false;
  for (const e of output.errors || []) {
    if (e.severity === "error") failed = true;
    process.stderr.write(e.formattedMessage + "\n");
  }
  if (failed) throw new Error("compilation failed");

  fs.mkdirSync(out, { recursive: true });
  const written = [];
  for (const f of files) {
    const name = path.basename(f, ".sol");
    const c = (output.contracts[f] || {})[name];
    if (!c || !c.evm.bytecode.object) continue; // abstract contracts and interfaces
    const artifact = {
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    fs.writeFileSync(path.join(out, name + ".json"), JSON.stringify(artifact, null, 2) + "\n");
    written.push(name);
  }
  process.stdout.write(`solc ${version}: wrote ${written.length} artifacts to ${out}: ${written.join(", ")}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`build.js: ${err.message}\n`);
  process.exit(1);
}
