"""The broker password as an encrypted systemd credential (``LoadCredentialEncrypted=`` in the units).

``systemd-creds encrypt`` runs as the target's own program, so the credential is sealed
with the target's host key (``/var/lib/systemd/credential.secret``; a Pi has no TPM) and
only that machine can open it.  Whether it is current is checked by decrypting it, so a
second install with the same password file changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from deploy.changes import Change
from deploy.layout import CONFIG_DIR
from deploy.target import Target

UNIT_CREDENTIAL = "gatepost-mqtt"
"""The name the shipped units load (``LoadCredentialEncrypted=gatepost-mqtt:…``)."""


def credential_path(name: str) -> PurePosixPath:
    return CONFIG_DIR / f"{name}.cred"


@dataclass
class MqttCredential(Change):
    name: str
    secret: bytes

    @property
    def path(self) -> PurePosixPath:
        return credential_path(self.name)

    def describe(self) -> str:
        return (
            f"encrypt the broker password as systemd credential {self.name} in {self.path} (0600 root:root)"
        )

    def pending(self, target: Target) -> bool:
        if not target.path(self.path).is_file():
            return True
        done = target.run(
            target.inside(["systemd-creds", "decrypt", f"--name={self.name}", str(self.path), "-"]),
            check=False,
        )
        return done.returncode != 0 or done.stdout.strip() != self.secret.strip()

    def apply(self, target: Target) -> None:
        target.run(
            target.inside(
                ["systemd-creds", "encrypt", "--with-key=host", f"--name={self.name}", "-", str(self.path)]
            ),
            input=self.secret.strip() + b"\n",
        )
        target.path(self.path).chmod(0o600)
