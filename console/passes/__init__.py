"""The site office: issue, print and revoke signed passes (``gatepost pass …``); see docs/passes.md, Issuing."""
