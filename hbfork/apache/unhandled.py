"""Apache directives import-apache does not translate: which ones cannot change what a client
or a member sees (summarised as skipped), and why each of the others is left out (listed by
file:line in the output). Pure.

A directive that is not on the harmless list is never skipped without a word: an operator
must see that a security header, an access rule or a log format did not carry over.
"""

from __future__ import annotations

# Cannot change what a client or a member sees through a proxy: server management, modules,
# MIME and language tables and directory listings for files Apache serves itself.
HARMLESS = frozenset({
    # modules, processes, MPM tuning, files of the server itself
    "loadmodule", "loadfile", "serverroot", "pidfile", "mutex", "defaultruntimedir",
    "startservers", "minspareservers", "maxspareservers", "minsparethreads", "maxsparethreads",
    "maxrequestworkers", "maxclients", "serverlimit", "threadlimit", "threadsperchild",
    "maxconnectionsperchild", "maxrequestsperchild", "maxkeepaliverequests",
    "asyncrequestworkerfactor", "threadstacksize", "gracefulshutdowntimeout", "listenbacklog",
    "scoreboardfile", "coredumpdirectory", "enablesendfile", "enablemmap", "hostnamelookups",
    "serveradmin", "accessfilename", "includeoptional", "include", "define", "undefine",
    # logging of the server itself (not the access log: see REASONS)
    "errorlog", "loglevel", "errorlogformat",
    # MIME, languages, charsets, icons and listings of local files
    "typesconfig", "addtype", "addcharset", "adddefaultcharset", "defaulttype", "mimemagicfile",
    "addencoding", "addlanguage", "languagepriority", "forcelanguagepriority", "addhandler",
    "removehandler", "removetype", "directoryindex", "directoryslash", "indexoptions",
    "indexignore", "indexorderdefault", "indexstylesheet", "addicon", "addiconbytype",
    "addiconbyencoding", "defaulticon", "adddescription", "readmename", "headername",
    # where Apache's own files are: what it served itself is the routes' business (a
    # ProxyPass PATH ! becomes a pass = false route, noted there)
    "documentroot",
    "options", "allowoverride", "allowoverridelist", "filesmatch", "files", "directory",
    "directorymatch", "servertokens", "serversignature", "usecanonicalname",
    "setenvif", "setenvifnocase", "browsermatch", "browsermatchnocase",
    "sslrandomseed", "sslsessioncachetimeout", "sslpassphrasedialog", "sslstaplingcache",
})

# Directives that change what clients or members see, and why hbfork leaves them out.
REASONS = {
    "logformat": "only a server's or a <VirtualHost>'s LogFormat is translated",
    "customlog": "only a server's or a <VirtualHost>'s CustomLog is translated",
    "transferlog": "only a server's or a <VirtualHost>'s TransferLog is translated",
    "protocols": "hbfork speaks HTTP/1.1 to clients (HTTP/2 is not offered)",
    "addoutputfilterbytype": "hbfork does not compress or filter responses (members' encoded "
                             "responses pass through)",
    "setoutputfilter": "hbfork does not filter responses",
    "setinputfilter": "hbfork does not filter requests",
    "proxyerroroverride": "hbfork passes members' error pages through unchanged",
    "errordocument": "hbfork's own error answers are short text; members' pass through",
    "require": "hbfork has no access rules by client address or user",
    "allow": "hbfork has no access rules by client address",
    "deny": "hbfork has no access rules by client address",
    "order": "hbfork has no access rules by client address",
    "authtype": "hbfork does no authentication",
    "authname": "hbfork does no authentication",
    "authuserfile": "hbfork does no authentication",
    "alias": "hbfork serves no files: write a pass = false route for the path, or let a "
             "member serve it",
    "aliasmatch": "hbfork serves no files",
    "scriptalias": "hbfork runs no scripts",
    "traceenable": "hbfork forwards TRACE to members like any method",
    "limitrequestbody": "set [http] max_body_size",
    "limitrequestfieldsize": "set [http] max_header_size",
    "limitrequestline": "set [http] max_request_line",
    "requestreadtimeout": "hbfork has header_timeout and client_timeout ([http]); no minimum "
                          "rates",
    "setenv": "environment variables reach no member through hbfork",
    "unsetenv": "environment variables reach no member through hbfork",
    "passenv": "environment variables reach no member through hbfork",
}
SECTION_REASONS = {
    "if": "hbfork evaluates no <If> expressions: what is inside is not applied",
    "elseif": "hbfork evaluates no <If> expressions",
    "else": "hbfork evaluates no <If> expressions",
    "limit": "hbfork has no per-method access rules",
    "limitexcept": "hbfork has no per-method access rules",
    "requireall": "hbfork has no access rules",
    "requireany": "hbfork has no access rules",
    "requirenone": "hbfork has no access rules",
}


# Why a RequestHeader or Header is not a header rule (hbfork.apache.headers), by what it uses.
HEADER_REASONS = (
    ("expr=", "hbfork evaluates no expressions (expr=): the rule would apply unconditionally, "
              "so it is not applied"),
    ("env=", "hbfork has no environment variables (env=): the rule is not applied"),
    ("early", "hbfork has no early phase: its rules apply once the request is routed"),
    ("echo", "hbfork does not echo request fields into responses"),
    ("note", "hbfork has no request notes"),
    ("%", "hbfork writes values as given: format specifiers (%t, %D, %{VAR}e...) are not "
          "expanded, so the rule is not applied"),
)


def header_reason(args: tuple[str, ...], problem: str) -> str:
    """Why a RequestHeader/Header with `args` was left out (`problem`: the parser's words)."""
    for word, reason in HEADER_REASONS:
        if word == "%" and "format specifiers" in problem:
            return reason
        if any(arg == word or (word.endswith("=") and arg.startswith(word)) for arg in args):
            return reason
    return f"not a rule hbfork can apply: {problem.split(': ', 1)[-1]}"


def reason_left_out(key: str, section: bool = False) -> str | None:
    """Why directive `key` (lower-case) is left out, or None when it cannot change what a
    client or member sees (it may be summarised as skipped)."""
    if key in HARMLESS:
        return None
    if section:
        return SECTION_REASONS.get(key, f"<{key}> sections are not translated: what is "
                                        "inside is not applied")
    return REASONS.get(key, "no hbfork equivalent: not applied")
