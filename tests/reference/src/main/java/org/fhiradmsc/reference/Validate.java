package org.fhiradmsc.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.context.support.ValidationSupportContext;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.LenientErrorHandler;
import ca.uhn.fhir.util.VersionUtil;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.lang.management.ManagementFactory;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.SocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.LongAdder;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.NpmPackageValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.common.hapi.validation.validator.WorkerContextValidationSupportAdapter;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.utilities.http.ManagedWebAccess;
import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * The HL7 FHIR validator engine (org.hl7.fhir.validation through HAPI FHIR), fully offline, over
 * many inputs in one JVM start.
 *
 * <pre>java -jar reference-validator.jar --package PATH/package.tgz [--package DEPENDENCY.tgz ...]
 *     [--threads N] FILE_OR_DIR...</pre>
 *
 * <p>Inputs are JSON resources, JSON Bundles and .ndjson files (folders are searched for *.json
 * and *.ndjson; a JSON file that is no resource, such as a manifest, is skipped and listed in the
 * summary). A Bundle is validated once as a whole, so references between its entries resolve, and
 * its issues are then split by the entry resource their location points into. With --threads N
 * (default 1) N files are validated at a time; the output keeps the input order.
 *
 * <p>Stdout gets one JSON line per resource, then one summary line; HAPI's own log (warnings only)
 * goes to stderr.
 */
public final class Validate {

  private static final Pattern ENTRY = Pattern.compile("^Bundle\\.entry\\[(\\d+)\\]\\.resource");
  private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();
  /** How many codes (Coding, Quantity, code) of each system the inputs hold. */
  private static final Map<String, LongAdder> SYSTEMS = new ConcurrentHashMap<>();

  /** What validating one file gave: its output lines, or why it was skipped. */
  private record Result(String file, List<String> lines, List<String> skipped, long ms) {}

  public static void main(String[] args) throws IOException, InterruptedException {
    List<Path> packagePaths = new ArrayList<>();
    int threads = 1;
    List<Path> inputs = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--package") && i + 1 < args.length) {
        packagePaths.add(Path.of(args[++i]));
      } else if (args[i].equals("--threads") && i + 1 < args.length) {
        threads = Integer.parseInt(args[++i]);
      } else {
        inputs.add(Path.of(args[i]));
      }
    }
    if (packagePaths.isEmpty() || inputs.isEmpty() || threads < 1) {
      System.err.println(
          "usage: java -jar reference-validator.jar --package package.tgz [--threads N] INPUT...");
      System.exit(2);
    }
    for (Path input : inputs) {
      if (!Files.exists(input)) {
        System.err.println("reference validator: no such file or folder: " + input);
        System.exit(2);
      }
    }
    List<String> network = Offline.install();

    FhirContext ctx = FhirContext.forR4Cached();
    PackageFile npm = new PackageFile(ctx);
    // the first package is the one under test; the others are what it depends on
    JsonArray packages = new JsonArray();
    for (Path packagePath : packagePaths) {
      packages.add(npm.loadPackageFromPath(packagePath));
    }
    JsonObject packageSummary = packages.get(0).getAsJsonObject();
    DefaultProfileValidationSupport core = new DefaultProfileValidationSupport(ctx);
    ValidationSupportChain chain =
        new ValidationSupportChain(
            npm,
            core,
            new CoreVersions(ctx, core),
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
    // As the HL7 validator's own worker context does (and FHIR's binding rules): a
    // CodeableConcept meets a binding when one of its codings is in the value set; HAPI's
    // default wants every coding in it, which fails a code given with a translation.
    chain.setCodeableConceptValidationSuccessfulIfNotAllCodingsAreValid(true);
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    // As the HL7 validator's command line does by default: an extension whose definition is not
    // loaded is an error, not an information message (HAPI's default allows any extension).
    module.setAnyExtensionsAllowed(false);
    WorkerContextValidationSupportAdapter worker =
        WorkerContextValidationSupportAdapter.newVersionSpecificWorkerContextWrapper(chain);
    module.setWrappedWorkerContext(chain, worker);
    FhirValidator validator = ctx.newValidator();
    validator.registerValidatorModule(module);
    packageSummary.add("snapshots", warmUp(npm, worker, validator));
    long startupMs = ManagementFactory.getRuntimeMXBean().getUptime();

    long started = System.nanoTime();
    List<Path> files = new ArrayList<>();
    for (Path input : inputs) {
      files.addAll(files(input));
    }
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    List<Future<Result>> pending = new ArrayList<>();
    for (Path file : files) {
      pending.add(pool.submit(() -> validateFile(validator, file)));
    }
    pool.shutdown();

    BufferedWriter out =
        new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
    int resources = 0;
    JsonArray skipped = new JsonArray();
    JsonArray perFile = new JsonArray();
    for (Future<Result> future : pending) {
      Result result;
      try {
        result = future.get();
      } catch (ExecutionException e) {
        throw new IllegalStateException(e.getCause());
      }
      for (String line : result.lines()) {
        out.write(line);
        out.newLine();
      }
      resources += result.lines().size();
      result.skipped().forEach(skipped::add);
      JsonObject timing = new JsonObject();
      timing.addProperty("file", result.file());
      timing.addProperty("resources", result.lines().size());
      timing.addProperty("ms", result.ms());
      perFile.add(timing);
    }
    long validateMs = (System.nanoTime() - started) / 1_000_000;

    JsonObject summary = new JsonObject();
    summary.addProperty("resources", resources);
    summary.addProperty("startup_ms", startupMs);
    summary.addProperty("validate_ms", validateMs);
    summary.addProperty("threads", threads);
    summary.addProperty("hapi_version", VersionUtil.getVersion());
    summary.add("package", packageSummary);
    summary.add("packages", packages);
    summary.add("skipped", skipped);
    summary.add("network_attempts", GSON.toJsonTree(network));
    summary.add("code_systems_not_validated", notValidated(chain));
    summary.add("files", perFile);
    JsonObject last = new JsonObject();
    last.add("summary", summary);
    out.write(GSON.toJson(last));
    out.newLine();
    out.flush();
  }

  /**
   * Generate the snapshot of every StructureDefinition of the package (the validator needs them
   * and caches them) and validate one small resource, so that validate_ms measures validation
   * alone. Returns how many snapshots were made and every failure, which is a finding.
   */
  private static JsonObject warmUp(
      PackageFile npm, WorkerContextValidationSupportAdapter worker, FhirValidator validator) {
    JsonArray failures = new JsonArray();
    int made = 0;
    for (IBaseResource resource : npm.fetchAllStructureDefinitions()) {
      String url = ((StructureDefinition) resource).getUrl();
      try {
        org.hl7.fhir.r5.model.StructureDefinition sd =
            worker.fetchResource(org.hl7.fhir.r5.model.StructureDefinition.class, url);
        if (sd == null || !sd.hasSnapshot()) {
          failures.add(url + ": no snapshot");
        } else {
          made++;
        }
      } catch (RuntimeException e) {
        failures.add(url + ": " + e.getMessage());
      }
    }
    validator.validateWithResult("{\"resourceType\": \"Basic\", \"code\": {\"text\": \"warm-up\"}}");
    JsonObject result = new JsonObject();
    result.addProperty("generated", made);
    result.add("failures", failures);
    return result;
  }

  /**
   * The code systems of the inputs that no module of the chain supports, with how many codes of
   * each the inputs hold: offline, those codes are not checked (SNOMED CT, LOINC, ...).
   */
  private static JsonObject notValidated(ValidationSupportChain chain) {
    ValidationSupportContext context = new ValidationSupportContext(chain);
    JsonObject result = new JsonObject();
    new TreeMap<>(SYSTEMS)
        .forEach(
            (system, count) -> {
              if (!chain.isCodeSystemSupported(context, system)) {
                result.addProperty(system, count.sum());
              }
            });
    return result;
  }

  private static void countSystems(JsonElement element) {
    if (element.isJsonArray()) {
      element.getAsJsonArray().forEach(Validate::countSystems);
    } else if (element.isJsonObject()) {
      JsonObject object = element.getAsJsonObject();
      JsonElement system = object.get("system");
      if (system != null && system.isJsonPrimitive() && object.has("code")) {
        SYSTEMS.computeIfAbsent(system.getAsString(), k -> new LongAdder()).increment();
      }
      object.entrySet().forEach(e -> countSystems(e.getValue()));
    }
  }

  private static List<Path> files(Path input) throws IOException {
    if (!Files.isDirectory(input)) {
      return List.of(input);
    }
    try (Stream<Path> walk = Files.walk(input)) {
      return walk.filter(Files::isRegularFile)
          .filter(p -> p.toString().endsWith(".json") || p.toString().endsWith(".ndjson"))
          .sorted()
          .toList();
    }
  }

  private static Result validateFile(FhirValidator validator, Path path) throws IOException {
    long started = System.nanoTime();
    String text = Files.readString(path, StandardCharsets.UTF_8);
    String name = path.toString();
    List<String> lines = new ArrayList<>();
    List<String> skipped = new ArrayList<>();
    if (name.endsWith(".ndjson")) {
      String[] rows = text.split("\n");
      for (int i = 0; i < rows.length; i++) {
        String why = rows[i].isBlank() ? null : document(validator, name, rows[i], lines);
        if (why != null) {
          skipped.add(name + ":" + (i + 1) + ": " + why);
        }
      }
    } else {
      String why = document(validator, name, text, lines);
      if (why != null) {
        skipped.add(name + ": " + why);
      }
    }
    return new Result(name, lines, skipped, (System.nanoTime() - started) / 1_000_000);
  }

  /** Validate one resource or Bundle into {@code lines}; returns why it was skipped, or null. */
  private static String document(
      FhirValidator validator, String file, String text, List<String> lines) {
    JsonObject resource;
    try {
      JsonElement parsed = JsonParser.parseString(text);
      if (!parsed.isJsonObject() || !parsed.getAsJsonObject().has("resourceType")) {
        return "not a FHIR resource";
      }
      resource = parsed.getAsJsonObject();
    } catch (JsonParseException e) {
      return "not JSON: " + e.getMessage();
    }
    countSystems(resource);
    List<SingleValidationMessage> messages = validator.validateWithResult(text).getMessages();
    String self = reference(resource);
    if (!"Bundle".equals(resource.get("resourceType").getAsString())) {
      lines.add(line(self, file, null, messages));
      return null;
    }
    // One validation of the whole Bundle; an issue inside an entry's resource goes to that
    // resource, any other (the Bundle's own rules, an entry's fullUrl or request) to the Bundle.
    JsonArray entries = resource.has("entry") ? resource.getAsJsonArray("entry") : new JsonArray();
    Map<Integer, List<SingleValidationMessage>> byEntry = new TreeMap<>();
    List<SingleValidationMessage> own = new ArrayList<>();
    for (SingleValidationMessage m : messages) {
      Matcher match = ENTRY.matcher(m.getLocationString() == null ? "" : m.getLocationString());
      int index = match.find() ? Integer.parseInt(match.group(1)) : -1;
      boolean inEntry =
          index >= 0
              && index < entries.size()
              && entries.get(index).isJsonObject()
              && entries.get(index).getAsJsonObject().has("resource");
      (inEntry ? byEntry.computeIfAbsent(index, k -> new ArrayList<>()) : own).add(m);
    }
    lines.add(line(self, file, null, own));
    for (int i = 0; i < entries.size(); i++) {
      JsonElement entry = entries.get(i);
      if (entry.isJsonObject() && entry.getAsJsonObject().get("resource") instanceof JsonObject r) {
        lines.add(line(reference(r), file, i, byEntry.getOrDefault(i, Collections.emptyList())));
      }
    }
    return null;
  }

  private static String reference(JsonObject resource) {
    JsonElement type = resource.get("resourceType");
    JsonElement id = resource.get("id");
    String typeName = type != null && type.isJsonPrimitive() ? type.getAsString() : "?";
    return id != null && id.isJsonPrimitive() ? typeName + "/" + id.getAsString() : typeName;
  }

  private static String line(
      String resource, String file, Integer entry, List<SingleValidationMessage> messages) {
    JsonObject line = new JsonObject();
    line.addProperty("resource", resource);
    line.addProperty("file", file);
    if (entry != null) {
      line.addProperty("entry", entry);
    }
    JsonArray issues = new JsonArray();
    for (SingleValidationMessage m : messages) {
      JsonObject issue = new JsonObject();
      issue.addProperty("severity", m.getSeverity().getCode());
      issue.addProperty("location", m.getLocationString());
      issue.addProperty("messageId", m.getMessageId());
      issue.addProperty("message", m.getMessage());
      if (m.hasSliceMessages()) {
        issue.add("sliceMessages", GSON.toJsonTree(m.getSliceMessages()));
      }
      issues.add(issue);
    }
    line.add("issues", issues);
    return GSON.toJson(line);
  }

  /**
   * HAPI's NpmPackageValidationSupport reads a package from the classpath only; this reads the
   * same package.tgz from a file with the HL7 NPM reader (NpmPackage) and loads its resources the
   * way HAPI's loadPackageFromClasspath does, so the package itself is what is proven loadable.
   */
  /**
   * The R4 core's own definitions named with their version ("...StructureDefinition/Patient|4.0.1",
   * as IG packages write them): the HL7 validator resolves them, HAPI's default support does not
   * (each such reference became a false "Unknown profile" error).
   */
  static final class CoreVersions implements IValidationSupport {
    private static final String VERSION = "|4.0.1";
    private final FhirContext ctx;
    private final DefaultProfileValidationSupport core;

    CoreVersions(FhirContext ctx, DefaultProfileValidationSupport core) {
      this.ctx = ctx;
      this.core = core;
    }

    @Override
    public FhirContext getFhirContext() {
      return ctx;
    }

    @Override
    public <T extends IBaseResource> T fetchResource(Class<T> theClass, String theUri) {
      if (theUri == null || !theUri.startsWith("http://hl7.org/fhir/") || !theUri.endsWith(VERSION)) {
        return null;
      }
      return core.fetchResource(theClass, theUri.substring(0, theUri.length() - VERSION.length()));
    }

    @Override
    public IBaseResource fetchStructureDefinition(String theUrl) {
      return fetchResource(StructureDefinition.class, theUrl);
    }

    @Override
    public IBaseResource fetchValueSet(String theUrl) {
      return fetchResource(org.hl7.fhir.r4.model.ValueSet.class, theUrl);
    }

    @Override
    public IBaseResource fetchCodeSystem(String theSystem) {
      return fetchResource(org.hl7.fhir.r4.model.CodeSystem.class, theSystem);
    }
  }

  static final class PackageFile extends NpmPackageValidationSupport {
    PackageFile(FhirContext ctx) {
      super(ctx);
    }

    JsonObject loadPackageFromPath(Path path) throws IOException {
      NpmPackage pkg;
      try (InputStream in = Files.newInputStream(path)) {
        pkg = NpmPackage.fromPackage(in);
      }
      NpmPackage.NpmPackageFolder folder = pkg.getFolders().get("package");
      if (folder == null) {
        throw new IOException(path + " has no package/ folder");
      }
      int loaded = 0;
      for (String name : folder.listFiles()) {
        if (name.toLowerCase(Locale.ROOT).endsWith(".json")
            && !name.equals("package.json")
            && !name.startsWith(".")) {
          IParser parser = getFhirContext().newJsonParser();
          parser.setParserErrorHandler(new LenientErrorHandler(false));
          String json = new String(folder.getContent().get(name), StandardCharsets.UTF_8);
          addResource(parser.parseResource(json));
          loaded++;
        }
      }
      JsonObject summary = new JsonObject();
      summary.addProperty("name", pkg.name());
      summary.addProperty("version", pkg.version());
      summary.addProperty("fhirVersion", pkg.fhirVersion());
      summary.addProperty("files", loaded);
      summary.addProperty(
          "indexed",
          pkg.listResources("StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide")
              .size());
      return summary;
    }
  }

  /**
   * Nothing may be fetched: the HL7 core's web access is prohibited (it logs each refusal on
   * stderr), and any other attempt to open a URL connection is refused by a proxy selector that
   * records it (reported in the summary).
   */
  static final class Offline extends ProxySelector {
    private final List<String> attempts = Collections.synchronizedList(new ArrayList<>());

    static List<String> install() {
      ManagedWebAccess.setAccessPolicy(ManagedWebAccess.WebAccessPolicy.PROHIBITED);
      Offline selector = new Offline();
      ProxySelector.setDefault(selector);
      return selector.attempts;
    }

    @Override
    public List<Proxy> select(URI uri) {
      attempts.add(String.valueOf(uri));
      System.err.println("reference validator: refused network access to " + uri);
      throw new IllegalArgumentException("offline: no network access (" + uri + ")");
    }

    @Override
    public void connectFailed(URI uri, SocketAddress address, IOException e) {}
  }
}
