"""What the real peaq-os-sdk 0.12.1 builds for a market-order payment with given values: the ERC-20
``transfer`` calldata (``stream.payment.transfer_token``) and the EVM payment-proof body
(``orchestration.payments.submit_payment_proof``), each captured through the SDK's own code path by the
generator of ``test/fixtures/sdk/market_order_vectors.json`` (stub servers; nothing is broadcast)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "sdk"))

import gen_market_order_vectors as gen  # noqa: E402


def _raw(amount: str, decimals: int) -> str:
    whole, _, frac = amount.partition(".")
    return str(int(whole) * 10**decimals + int((frac or "0").ljust(decimals, "0")))


def sdk_transfer_calldata(payee: str, amount: str, decimals: int) -> str:
    gen.INPUTS.update(payee_address=payee, amount=amount, token_decimals=decimals)
    return gen._transfer()["data"]


def sdk_proof_body(*, chain: str, token: str, token_address: str, decimals: int, payer: str, payee: str,
                   amount: str, tx_hash: str) -> dict:
    gen.INPUTS.update(chain=chain, token=token, token_address=token_address, token_decimals=decimals,
                      payer_address=payer, payee_address=payee, amount=amount, transaction_hash=tx_hash,
                      raw_amount=_raw(amount, decimals))
    return gen._proof_request()["body"]
