"""Real Tomcat 10 (Debian's tomcat10) for scripts/bench-ajp and the AJP interop tests: a private
CATALINA_BASE per instance with its own server.xml (an AJP/1.3 connector on a loopback address,
with secretRequired, and the Engine's jvmRoute), and one small servlet that says what it
received (compiled once against Tomcat's servlet-api.jar, by javac or by Debian's ECJ).

Tomcat runs in the foreground (`Bootstrap start`, no shutdown port) and is stopped by its pid.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

CATALINA_HOME = Path("/usr/share/tomcat10")
CONF_SOURCES = (Path("/etc/tomcat10"), CATALINA_HOME / "etc")
SECRET = "s3cret-ajp"
# Eclipse's compiler, which Debian's tomcat10 brings for JSPs (libeclipse-jdt-core-java): the
# servlet compiles with it where there is no JDK.
ECJ = Path("/usr/share/java/eclipse-jdt-core.jar")

# Says what the request carried; `?session` makes a session (its id ends with the jvmRoute).
SERVLET = """\
import jakarta.servlet.http.*;
import java.io.*;
import java.util.zip.CRC32;

public class Echo extends HttpServlet {
    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        byte[] buf = new byte[65536];
        long n = 0;
        CRC32 crc = new CRC32();
        if (req.getContentLengthLong() > 0 || req.getHeader("Transfer-Encoding") != null) {
            InputStream in = req.getInputStream();  // only a request with a body, as apps do
            int r;
            while ((r = in.read(buf)) > 0) { n += r; crc.update(buf, 0, r); }
        }
        HttpSession s = req.getParameter("session") != null ? req.getSession(true)
                                                          : req.getSession(false);
        String text = "method=" + req.getMethod() + "\\nuri=" + req.getRequestURI()
            + "\\nquery=" + req.getQueryString() + "\\nremote=" + req.getRemoteAddr()
            + "\\nport=" + req.getRemotePort() + "\\nsecure=" + req.isSecure()
            + "\\nhost=" + req.getServerName() + "\\nbody=" + n + "\\ncrc=" + crc.getValue()
            + "\\nsession=" + (s == null ? "" : s.getId())
            + "\\nname=" + System.getProperty("hbtest.name") + "\\n";
        byte[] out = text.getBytes("UTF-8");
        resp.setContentType("text/plain");
        if (req.getParameter("stream") == null) {
            resp.setContentLength(out.length);
            resp.getOutputStream().write(out);
        } else {  // committed before its end: no Content-Length
            resp.getOutputStream().write(out, 0, out.length / 2);
            resp.flushBuffer();
            resp.getOutputStream().write(out, out.length / 2, out.length - out.length / 2);
        }
    }
}
"""

WEB_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="5.0">
  <servlet><servlet-name>echo</servlet-name><servlet-class>Echo</servlet-class></servlet>
  <servlet-mapping><servlet-name>echo</servlet-name><url-pattern>/*</url-pattern></servlet-mapping>
</web-app>
"""


def unavailable_reason() -> str | None:
    if not (CATALINA_HOME / "bin" / "bootstrap.jar").exists():
        return "tomcat10 is not installed (apt-get install tomcat10)"
    if shutil.which("java") is None:
        return "java missing (tomcat10 brings a JRE)"
    if shutil.which("javac") is None and not ECJ.exists():
        return f"no Java compiler for the test servlet (javac, or {ECJ})"
    return None


def build_servlet(directory: Path) -> Path:
    """Compile the servlet once; returns the classes directory."""
    classes = directory / "classes"
    classes.mkdir(parents=True, exist_ok=True)
    source = directory / "Echo.java"
    source.write_text(SERVLET)
    compiler = ["javac"] if shutil.which("javac") else \
        ["java", "-cp", str(ECJ), "org.eclipse.jdt.internal.compiler.batch.Main", "-17",
         "-nowarn", "-proc:none"]
    subprocess.run([*compiler, "-cp", str(CATALINA_HOME / "lib" / "servlet-api.jar"), "-d",
                    str(classes), str(source)], check=True, capture_output=True, timeout=120)
    return classes


def server_xml(ip: str, port: int, route: str, secret: str, packet_size: int = 8192,
               threads: int = 50) -> str:
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <Server port="-1" shutdown="SHUTDOWN">
          <Service name="Catalina">
            <Connector protocol="AJP/1.3" address="{ip}" port="{port}"
                       secretRequired="true" secret="{secret}" packetSize="{packet_size}"
                       maxThreads="{threads}" redirectPort="8443"/>
            <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
              <Host name="localhost" appBase="webapps" unpackWARs="false"
                    autoDeploy="false"/>
            </Engine>
          </Service>
        </Server>
        """)


def prepare_base(base: Path, classes: Path, ip: str, port: int, route: str,
                 secret: str = SECRET, packet_size: int = 8192, heap: str = "256m",
                 threads: int = 50) -> list[str]:
    """Make the CATALINA_BASE `base` (the servlet as its ROOT webapp); returns the argv that
    runs that Tomcat in the foreground."""
    for sub in ("conf", "logs", "temp", "work", "webapps/ROOT/WEB-INF"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    source = next((d for d in CONF_SOURCES if (d / "web.xml").exists()), CONF_SOURCES[-1])
    for name in ("web.xml", "logging.properties", "catalina.properties"):
        if (source / name).exists():
            shutil.copy(source / name, base / "conf" / name)
    (base / "conf" / "server.xml").write_text(server_xml(ip, port, route, secret, packet_size,
                                                         threads))
    shutil.copytree(classes, base / "webapps/ROOT/WEB-INF/classes", dirs_exist_ok=True)
    (base / "webapps/ROOT/WEB-INF/web.xml").write_text(WEB_XML)
    classpath = f"{CATALINA_HOME}/bin/bootstrap.jar:{CATALINA_HOME}/bin/tomcat-juli.jar"
    return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Xshare:auto",
            f"-Dcatalina.base={base}", f"-Dcatalina.home={CATALINA_HOME}",
            f"-Djava.io.tmpdir={base / 'temp'}", f"-Dhbtest.name={route}",
            "-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
            f"-Djava.util.logging.config.file={base / 'conf' / 'logging.properties'}",
            "-cp", classpath, "org.apache.catalina.startup.Bootstrap", "start"]
