package org.fhiradmsc.hapi;

import ca.uhn.fhir.rest.server.RestfulServer;
import java.io.IOException;
import java.io.PrintStream;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.SocketAddress;
import java.net.URI;
import java.util.List;
import java.util.Set;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.ServerConnector;
import org.hl7.fhir.utilities.http.ManagedWebAccess;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;

/**
 * A HAPI FHIR R4 JPA server (see {@link HapiConfig}) on 127.0.0.1 for fhir-admsc's tests.
 *
 * <pre>java -jar hapi-server.jar [PORT]</pre>
 *
 * <p>PORT 0 (the default) picks a free one. When the server answers, stdout gets exactly one line,
 * {@code {"base": "http://127.0.0.1:PORT/fhir"}}; every log line goes to stderr (warnings only).
 * The database is in memory: it starts empty and is gone when the process ends (SIGTERM stops
 * Jetty and Spring in order).
 */
public final class Server {

  private Server() {}

  public static void main(String[] args) throws Exception {
    int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;
    // stdout is the announcement channel: whatever a library prints goes to stderr instead. Set
    // before any logger exists, so that slf4j-simple reads it.
    PrintStream announce = System.out;
    System.setOut(System.err);
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
    Offline.install();

    AnnotationConfigApplicationContext spring =
        new AnnotationConfigApplicationContext(HapiConfig.class);
    org.eclipse.jetty.server.Server jetty = new org.eclipse.jetty.server.Server();
    ServerConnector connector = new ServerConnector(jetty);
    connector.setHost("127.0.0.1");
    connector.setPort(port);
    jetty.addConnector(connector);
    ServletContextHandler context = new ServletContextHandler();
    context.setContextPath("/");
    ServletHolder fhir = new ServletHolder(spring.getBean(RestfulServer.class));
    fhir.setInitOrder(1); // the servlet is initialised before start() returns
    context.addServlet(fhir, "/fhir/*");
    jetty.setHandler(context);
    jetty.setStopAtShutdown(true);
    Runtime.getRuntime().addShutdownHook(new Thread(spring::close, "spring-shutdown"));
    jetty.start();

    announce.println("{\"base\": \"http://127.0.0.1:" + connector.getLocalPort() + "/fhir\"}");
    announce.flush();
    jetty.join();
  }

  /**
   * Nothing may be fetched from another machine: the HL7 core's web access (package and
   * terminology servers) is prohibited, and any other outgoing connection is refused, with a line
   * on stderr, unless it stays on this machine (a test serves $import's NDJSON files on loopback).
   */
  static final class Offline extends ProxySelector {
    private static final Set<String> LOOPBACK = Set.of("127.0.0.1", "localhost", "[::1]", "::1");

    static void install() {
      ManagedWebAccess.setAccessPolicy(ManagedWebAccess.WebAccessPolicy.PROHIBITED);
      ProxySelector.setDefault(new Offline());
    }

    @Override
    public List<Proxy> select(URI uri) {
      if (LOOPBACK.contains(uri.getHost())) {
        return List.of(Proxy.NO_PROXY);
      }
      System.err.println("hapi-server: refused network access to " + uri);
      throw new IllegalArgumentException("offline: no network access (" + uri + ")");
    }

    @Override
    public void connectFailed(URI uri, SocketAddress address, IOException e) {}
  }
}
