"""Private Tomcat 10 instances for the interop tests (Debian's tomcat10): one CATALINA_BASE per
instance in a scratch directory, with the server.xml the test writes, run in the foreground so
its pid is the JVM's own. Under CI=true a missing tomcat10 fails instead of skipping."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CATALINA_HOME = Path("/usr/share/tomcat10")
STARTUP = 90.0  # seconds a JVM may take to start on a loaded two-core machine


def tomcat_unavailable_reason() -> str | None:
    if not (CATALINA_HOME / "bin" / "bootstrap.jar").exists():
        return f"tomcat10 is not installed ({CATALINA_HOME}; apt-get install tomcat10)"
    if shutil.which("java") is None:
        return "no java on PATH (tomcat10 depends on a JRE)"
    return None


def require_tomcat() -> None:
    reason = tomcat_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"real Tomcat missing under CI: {reason}")
    pytest.skip(f"real Tomcat unavailable: {reason}")


def prepare_base(base: Path, name: str, server_xml: str) -> list[str]:
    """Lay out CATALINA_BASE (its ROOT webapp answers `name` and a newline at /) and return the
    command that runs the JVM in the foreground."""
    for sub in ("conf", "logs", "temp", "work", "webapps/ROOT"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for conf in ("web.xml", "catalina.properties", "logging.properties"):
        shutil.copy(CATALINA_HOME / "etc" / conf, base / "conf" / conf)
    (base / "conf" / "server.xml").write_text(server_xml)
    (base / "webapps" / "ROOT" / "index.html").write_text(f"{name}\n")
    # A small heap, the serial collector and C1 only: two cores are shared by the whole suite.
    return ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dcatalina.home={CATALINA_HOME}",
            f"-Dcatalina.base={base}", f"-Djava.io.tmpdir={base / 'temp'}",
            "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
            f"-Djava.util.logging.config.file={base / 'conf' / 'logging.properties'}",
            "-cp", f"{CATALINA_HOME}/bin/bootstrap.jar:{CATALINA_HOME}/bin/tomcat-juli.jar",
            "org.apache.catalina.startup.Bootstrap", "start"]
