"""Your own organisation and its signer on chain (SPEC §7/§8)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentOrg, LedgerDep
from api.schemas_lots import OrganisationPublic, SignerUpdate

router = APIRouter(prefix="/v1/organisation", tags=["organisations"])


@router.get("", response_model=OrganisationPublic, summary="Your organisation and its registration on chain")
def get_organisation(org: CurrentOrg, ledger: LedgerDep) -> dict:
    """While its signer is not on chain, `registration` is the `RegisterOrganisation` action that key signs
    (proof of possession): sign its `typed_data` and post to `/v1/actions/{id}/signatures`; the relayer
    then records the signer with your role and `chain_org` is set."""
    return ledger.organisation(org)


@router.post("/signer", response_model=OrganisationPublic, summary="Set your signer address (before it is on chain)")
def set_signer(body: SignerUpdate, org: CurrentOrg, ledger: LedgerDep) -> dict:
    """Names the key that signs your approvals and proposes its registration (see `GET`). Once registered, a
    new key is a rotation signed by both keys, not this."""
    return ledger.set_signer(org, body.signer)
