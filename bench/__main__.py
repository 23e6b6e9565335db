"""Run every benchmark in bench/ in turn and print its figures."""

from __future__ import annotations

import asyncio

from bench import dashboard, database, hetzner_api, kube_api, status

if __name__ == "__main__":
    asyncio.run(hetzner_api.main())
    asyncio.run(kube_api.main())
    status.main()
    dashboard.main()
    database.main()
