// SessionIDClient makes repeated HTTPS requests, one TLS 1.2 connection
// each, with Java's own client session cache, and prints how many
// connections resumed the cached session. Run it with
//   java -Djdk.tls.client.enableSessionTicketExtension=false \
//        -Djdk.tls.client.protocols=TLSv1.2 SessionIDClient.java HOST ADDR PORT CA_PEM N
// so that it behaves like a Java 8 client: TLS 1.2, session IDs only.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.*;
import java.util.Arrays;
import javax.net.ssl.*;

public class SessionIDClient {
    public static void main(String[] args) throws Exception {
        String host = args[0], addr = args[1];
        int port = Integer.parseInt(args[2]), n = Integer.parseInt(args[4]);
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(args[3])) {
            ks.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLSv1.2");
        ctx.init(null, tmf.getTrustManagers(), null);
        SSLSocketFactory f = ctx.getSocketFactory();
        byte[] prev = null;
        int resumed = 0, ok = 0;
        for (int i = 0; i <= n; i++) {
            try (Socket raw = new Socket(addr, port);
                 SSLSocket s = (SSLSocket) f.createSocket(raw, host, port, true)) {
                SSLParameters p = s.getSSLParameters();
                p.setServerNames(java.util.List.of(new SNIHostName(host)));
                p.setEndpointIdentificationAlgorithm("HTTPS");
                s.setSSLParameters(p);
                s.startHandshake();
                byte[] id = s.getSession().getId();
                if (i > 0 && prev != null && Arrays.equals(id, prev)) {
                    resumed++;
                }
                prev = id;
                OutputStream out = s.getOutputStream();
                out.write(("GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                out.flush();
                BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII));
                String status = r.readLine();
                if (status != null && status.startsWith("HTTP/1.1 200")) {
                    ok++;
                }
                while (r.readLine() != null) { }
            }
        }
        // The first connection is the full handshake; n reconnects follow.
        System.out.println("resumed " + resumed + " of " + n + " ok " + ok);
    }
}
