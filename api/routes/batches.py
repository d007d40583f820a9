from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Auditor, CurrentOrg, LedgerDep
from api.schemas import ErrorBody

router = APIRouter(prefix="/v1/batches", tags=["batches"])

BatchIndex = Annotated[int, Path(ge=0, description="the batch's index, which is its checkpoint index on chain")]


@router.get("/{index}/tree", summary="The whole batch as an OpenZeppelin StandardMerkleTree dump (auditors)")
def get_tree(index: BatchIndex, _: Auditor, ledger: LedgerDep) -> dict:
    """`StandardMerkleTree.dump()` JSON (`format: "standard-v1"`, leaf encoding `["bytes32", "bytes32"]`,
    values `[salt, digest]` with every reading's salt): `StandardMerkleTree.load()` accepts it as it
    is. `anchor` (ignored by `load`) says where `tree[0]` is anchored (`rootOf(anchor.index)`)."""
    return ledger.batch_tree(index)


@router.get(
    "/{index}/multiproof",
    summary="Every reading of one lot in the batch, with one OpenZeppelin multiproof",
    responses={409: {"model": ErrorBody, "description": "proof_pending: the batch is not anchored yet; see Retry-After"}},
)
def get_multiproof(
    index: BatchIndex,
    lot: Annotated[str, Query(min_length=1, max_length=128, description="the goods lot")],
    _: CurrentOrg,
    ledger: LedgerDep,
) -> dict:
    """A `pledgeledger.multiproof/1` bundle: the signed readings with salts, digests, leaves and
    device keys, `multiproof` as `StandardMerkleTree.getMultiProof` returns it, the root and the
    anchor. Verify it with `pledgeledger verify FILE --rpc URL`."""
    return ledger.multiproof(index, lot)
