"""pledgeledger's service side: chain access, storage and the anchoring pipeline."""
