"""Load a TRex stateless profile the way the TRex client does (STLProfile.load_py, no server) and print
each stream's frame, as TRex would send it, in hex, one JSON object on stdout:

  {"frames": ["02be...", ...], "scapy_default_vxlan": "02be..."}

scapy_default_vxlan is the first decap frame rebuilt with the bundled scapy's default VXLAN header
(VXLAN-GPE style flags 0x0c, next protocol 3), the mistake the profile avoids; weft must count it.

  python dump_profile.py bench/trex/weft_vxlan.py mode=decap peers=10 flows=64 size=64
"""

import base64
import json
import os
import sys

import lbr_trex_client  # noqa: F401  (puts trex_stl_lib on the path)
from trex_stl_lib.api import UDP, VXLAN, STLProfile


def main():
    path, tunables = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    profile = STLProfile.load_py(path, **tunables)
    if profile is None:
        sys.exit("the profile refused its tunables")
    frames = [base64.b64decode(s.to_json()["packet"]["binary"]) for s in profile.get_streams()]
    out = {"frames": [f.hex() for f in frames]}
    # The first frame again, its VXLAN header left to the bundled scapy's defaults.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    module = __import__(os.path.basename(path).rsplit(".", 1)[0])
    pkt = module.decap_frame(0, int(tunables.get("peers", 10)), int(tunables.get("size", 64)))
    inner = pkt[VXLAN].payload.copy()
    pkt[UDP].remove_payload()
    out["scapy_default_vxlan"] = bytes(pkt / VXLAN(vni=module.VNI) / inner).hex()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
