"""The stand-ins' ABIs against the SDK ABIs (test/fixtures/sdk/abi) and SIGNATURES.txt.

Every function selector, event topic0 (plus the indexed flags) and error selector an artifact
declares must exist in the reference ABI of the contract it stands in for, with the same
output types, and must be listed in that generation's SIGNATURES.txt — except harness-only
members (name starting with ``harness``) and the explicit, documented extras below. The
members the SDKs / CLI / Rust client rely on must be present (``REQUIRED``).
Also runs ``check_artifacts.sh`` (committed artifacts == fresh compile).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

HERE = Path(__file__).resolve().parent
ABI_ROOT = Path(os.environ.get("PEAQOS_ABI_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "abi"))
GEN1 = ABI_ROOT / "gen1-sdk-0.11.2"
GEN2 = ABI_ROOT / "gen2-sdk-0.12.1"

REFERENCE = {
    "BatchPrecompile": GEN2 / "BatchPrecompile.json",
    "DIDPrecompile": GEN1 / "DIDPrecompile.json",
    "PeaqToken": GEN2 / "PeaqToken.json",
    "InfoDesk": GEN2 / "InfoDesk.json",
    "MachineRegistry": GEN2 / "MachineRegistry.json",
    "MachineStateAndSync": GEN2 / "MachineStateAndSync.json",
    "MachineSubscription": GEN2 / "MachineSubscription.json",
    "CrossChainMirror": GEN2 / "CrossChainMirror.json",
    "EventRegistryV2": GEN2 / "EventRegistry.json",
    "EventRegistryV1": GEN1 / "EventRegistry.json",
    "IdentityRegistry": GEN1 / "IdentityRegistry.json",
    "IdentityStaking": GEN1 / "IdentityStaking.json",
    "MachineNFT": GEN1 / "MachineNFT.json",
    "MachineAccountFactory": GEN1 / "MachineAccountFactory.json",
    "MachineSmartAccount": GEN1 / "MachineSmartAccount.json",
    "MachineNFTAdapter": GEN1 / "MachineNFTAdapter.json",
    "MachineNFTBase": GEN1 / "MachineNFTBase.json",
}

# Members that exist only on the test chain, with the reason.
EXTRAS = {
    # The vendored PeaqToken ABI is a 4-member subset; the stand-in is a full ERC-20 with an
    # owner that the harness uses to set balances.
    "PeaqToken": {
        "function name()", "function symbol()", "function decimals()", "function totalSupply()",
        "function transfer(address,uint256)", "function transferFrom(address,address,uint256)",
        "function owner()", "event Transfer(address,address,uint256)",
        "event OwnershipTransferred(address,address)",
        "error ERC20InsufficientBalance(address,uint256,uint256)",
        "error ERC20InsufficientAllowance(address,uint256,uint256)",
        "error ERC20InvalidReceiver(address)", "error ERC20InvalidSpender(address)",
        "error OwnableUnauthorizedAccount(address)", "error InvalidInitialization()",
    },
    # Registry -> staking wiring for the native bond (the real path is not public).
    "IdentityStaking": {"function stakeNative(uint256,address)"},
    # HarnessOwnable's one-shot set-up (the real contracts take their owner in a constructor).
    "MachineNFTAdapter": {"error InvalidInitialization()"},
    "MachineNFTBase": {"error InvalidInitialization()"},
}

# Event declarations that intentionally differ in `indexed` from the SDK ABI (topic0 equal).
INDEXED_EXCEPTIONS = {
    # The node emits log1 with every field in data (SPEC §2.2); the SDK ABI says indexed.
    "DIDPrecompile": {"AddAttribute", "UpdateAttribute", "RemoveAttribute"},
}

REQUIRED = {
    "BatchPrecompile": ["batchAll", "batchSome", "batchSomeUntilFailure", "SubcallSucceeded", "SubcallFailed"],
    "DIDPrecompile": ["readAttribute", "addAttribute", "updateAttribute", "removeAttribute", "AddAttribute"],
    "PeaqToken": ["balanceOf", "allowance", "approve", "Approval"],
    "InfoDesk": ["peer", "peaqToken", "localChainId", "setPeer", "initialize"],
    "MachineRegistry": ["computeTokenId", "ownerOf", "controllerOf", "operatorOf", "didDocument", "didFromTokenId",
                        "MachineMinted", "ERC721NonexistentToken", "NotOwnerOrController"],
    "MachineStateAndSync": ["activateMachine", "isTechnicalPaused", "isTechnicalPausedGlobal", "isRelocating",
                            "MachineOnboarded"],
    "MachineSubscription": ["requiredPeaqAmount", "pendingVoucherCredit", "subscriptionStatus", "subscriptions",
                            "isEconomicAuthority", "Activated", "VoucherRedeemed", "AlreadyActivated", "InvalidTier",
                            "PriceNotAvailable", "TechnicallyPaused"],
    "CrossChainMirror": ["homeChainOf", "isHomedLocally"],
    "EventRegistryV2": ["submitEvent", "getEventCount", "getEventAt", "getEvents", "totalEventCount",
                        "MAX_METADATA_SIZE", "EventSubmitted", "NotOwnerOrController", "SubscriptionNotEligible",
                        "FutureTimestamp", "InvalidEventType", "InvalidTrustLevel", "InvalidCurrencyShape",
                        "MetadataTooLarge"],
    "EventRegistryV1": ["submitEvent", "getEventCount", "getEventAt", "getEvents", "totalEventCount",
                        "identityRegistryAddress", "EventSubmitted", "MachineNotFound", "MachineNotBonded",
                        "MachineDeactivated", "NotAuthorizedSubmitter", "FutureTimestamp", "MetadataTooLarge"],
    "IdentityRegistry": ["register", "registerFor", "minBond", "machineIdOfOwner", "operatorOf",
                         "isAuthorizedOrOwner", "getOwnerIfExists", "getMachineStatus", "isDeactivated", "Registered",
                         "IncorrectBondAmount", "AlreadyRegistered"],
    "IdentityStaking": ["getStake", "isStaked", "getStakeInfo", "Staked"],
    "MachineNFT": ["mint", "tokenIdOf", "machineIdOf", "ownerOf", "MachineMinted", "MachineNotBonded", "AlreadyMinted",
                   "RecipientMustBeMachineOwner", "approve", "getApproved", "transferFrom", "Approval"],
    "MachineAccountFactory": ["createAccount", "getAddress", "AccountCreated", "FailedDeployment", "InvalidAddress"],
    "MachineSmartAccount": ["initialize", "owner", "machine"],
    "MachineNFTAdapter": ["quoteSend", "send", "token", "ONFTSent", "NoPeer", "NotEnoughNative", "OnlyNFTOwner"],
    "MachineNFTBase": ["ownerOf", "ERC721NonexistentToken", "Transfer"],
}


def _type(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + t[len("tuple"):]
    return t


def _sig(entry: dict) -> str:
    return f"{entry['name']}({','.join(_type(i) for i in entry.get('inputs', []))})"


def _members(abi: list[dict]) -> dict[str, dict]:
    """'function f(uint256)' / 'event E(...)' / 'error X(...)' -> entry."""
    return {f"{e['type']} {_sig(e)}": e for e in abi if e.get("type") in ("function", "event", "error")}


def _code(kind_sig: str) -> str:
    kind, sig = kind_sig.split(" ", 1)
    digest = Web3.keccak(text=sig).hex().removeprefix("0x")
    return "0x" + (digest if kind == "event" else digest[:8])


def _load_abi(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data["abi"] if isinstance(data, dict) else data


def _signature_codes(path: Path) -> set[str]:
    """All selectors / topic0 values listed in the SIGNATURES.txt section for ``path``."""
    text = (path.parent / "SIGNATURES.txt").read_text()
    codes: set[str] = set()
    in_section = False
    for line in text.splitlines():
        if line.startswith("// ====="):
            in_section = line.rstrip().endswith("/" + path.name)
            continue
        if in_section:
            codes.update(m.lower() for m in re.findall(r"//\s*(?:topic0\s+)?(0x[0-9a-fA-F]+)", line))
    return codes


@pytest.mark.parametrize("artifact", sorted(REFERENCE))
def test_artifact_abi_matches_reference(artifact: str):
    mine = _members(json.loads((HERE / "artifacts" / f"{artifact}.json").read_text())["abi"])
    ref_path = REFERENCE[artifact]
    ref = _members(_load_abi(ref_path))
    listed = _signature_codes(ref_path)
    assert listed, f"no SIGNATURES.txt section for {ref_path.name}"
    extras = EXTRAS.get(artifact, set())
    problems = []
    for key, entry in mine.items():
        if entry["name"].startswith("harness") or key in extras:
            continue
        if key not in ref:
            problems.append(f"{key} is not in {ref_path.name}")
            continue
        if _code(key) not in listed:
            problems.append(f"{key} ({_code(key)}) is not listed in SIGNATURES.txt")
        if entry["type"] == "function":
            mine_out = [_type(o) for o in entry.get("outputs", [])]
            ref_out = [_type(o) for o in ref[key].get("outputs", [])]
            if mine_out != ref_out:
                problems.append(f"{key} returns {mine_out}, reference {ref_out}")
        if entry["type"] == "event" and entry["name"] not in INDEXED_EXCEPTIONS.get(artifact, set()):
            flags = [bool(i.get("indexed")) for i in entry["inputs"]]
            ref_flags = [bool(i.get("indexed")) for i in ref[key]["inputs"]]
            if flags != ref_flags:
                problems.append(f"{key} indexed {flags}, reference {ref_flags}")
    names = {e["name"] for e in mine.values()}
    problems += [f"required member {n} missing" for n in REQUIRED[artifact] if n not in names]
    assert not problems, f"{artifact}:\n  " + "\n  ".join(problems)


def test_key_selectors_match_spec():
    """Spot checks against SPEC.md's literal selector/topic values."""
    expect = {
        "function submitEvent(uint256,uint8,uint256,string,uint256,bytes32,uint8,uint256,bytes32,bytes)": "0xe58a43ca",
        "function batchAll(address[],uint256[],bytes[],uint64[])": "0x96e292b8",
        "function register()": "0x1aa3a008",
        "function addAttribute(address,bytes,bytes,uint32)": "0xcc4a70ca",
        "error ERC721NonexistentToken(uint256)": "0x7e273289",
        "error SubscriptionNotEligible(uint8)": "0xac36d666",
        "event EventSubmitted(uint256,uint256,uint8,uint256,string)":
            "0x43cf4ee187795b573b3f38e97f7944f1354ded4b87a5703aaf904465a981a081",
    }
    for key, code in expect.items():
        assert _code(key) == code, key
    activate = [k for k in _members(json.loads((HERE / "artifacts" / "MachineStateAndSync.json").read_text())["abi"])
                if k.startswith("function activateMachine(")]
    assert [_code(k) for k in activate] == ["0xda3802f6"]


def test_committed_artifacts_match_a_fresh_compile():
    if not (HERE / "node_modules" / "solc").exists():
        pytest.skip("node_modules missing: run `npm ci` in test/chain")
    proc = subprocess.run([str(HERE / "check_artifacts.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
