"""The GS1-conformant resolver (GS1-Conformant Resolver standard 1.2, ISO/IEC 18975): product identifier paths
answered with a 307 to the current passport, ``linkType`` selection, RFC 9264 linksets, ``/.well-known/gs1resolver``;
and the links operators configure for their batteries (``resolver_links``)."""
