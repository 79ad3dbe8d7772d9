/*
 * pgJDBC through sluice.  tests/drivers/run.sh compiles this with javac at
 * test time and runs it with Debian's /usr/share/java/postgresql.jar.
 *
 *   java -cp DIR:postgresql.jar JdbcDriver VARIANT SCENARIO
 *
 * Variants: jdbc-threshold1 (prepareThreshold=1: server-prepared from the
 * first execution) and jdbc-default (the default prepareThreshold=5).
 * Scenarios: matrix, alter, session, txnstate.  The environment is the one of
 * drvcommon.py (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, DRIVER_*),
 * and so is the summary line: "RESULT <variant> <scenario>: ok (...)".
 *
 * pgJDBC sends extra_float_digits=2 and the JVM's TimeZone in its startup
 * packet and then, on a server of version 12 or later, runs
 * "SET extra_float_digits = 3" (not a reported parameter): 3 is what a pgJDBC
 * session sees directly against Postgres, so it is what the session scenario
 * expects.  run.sh starts the JVM with -Duser.timezone=America/Sao_Paulo so
 * that the startup zone differs from the server's default.
 */
import java.io.File;
import java.io.IOException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TimeZone;
import java.util.TreeMap;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

public class JdbcDriver {
	static final int CLIENTS = envInt("DRIVER_CLIENTS", 40);
	static final int ITERATIONS = envInt("DRIVER_ITERATIONS", 50);
	static final int MAX_BACKENDS = envInt("DRIVER_MAX_BACKENDS", 0);
	static final boolean EXPECT_MOVES = "1".equals(System.getenv("DRIVER_EXPECT_MOVES"));
	static final boolean STRICT = !"0".equals(System.getenv("DRIVER_STRICT"));
	static final String[] ZONES = {"Asia/Tokyo", "America/New_York", "Europe/Berlin",
	                               "Australia/Sydney"};

	static String variant;
	static String scenario;
	static final Report report = new Report();

	static String env(String name, String fallback) {
		String v = System.getenv(name);
		return v == null || v.isEmpty() ? fallback : v;
	}

	static int envInt(String name, int fallback) {
		return Integer.parseInt(env(name, Integer.toString(fallback)));
	}

	static final class Check extends Exception {
		Check(String message) {
			super(message);
		}
	}

	static void expect(Object got, Object want, String what) throws Check {
		if (got == null ? want != null : !got.equals(want))
			throw new Check(what + ": got " + got + ", want " + want);
	}

	/* Adds "what: got X, want Y" to `wrong` unless got equals want. */
	static void want(List<String> wrong, Object got, Object want, String what) {
		if (got == null ? want != null : !got.equals(want))
			wrong.add(what + ": got " + got + ", want " + want);
	}

	static String table(String base) {
		return "drv_" + base + "_" + variant.replace('-', '_');
	}

	static final class Report {
		final List<String> errors = new ArrayList<>();
		final Set<Integer> backends = new HashSet<>();
		final Map<String, String> notes = new TreeMap<>();
		final Map<String, Integer> patterns = new TreeMap<>();
		int moved;
		int clients = CLIENTS;

		synchronized void fail(Object client, Throwable e) {
			String detail = describe(e);
			errors.add("client " + client + ": " + detail);
			if (errors.size() <= 5) {
				System.err.println("client " + client + " failed: " + detail);
				if (!(e instanceof Check))
					e.printStackTrace();
			}
		}

		synchronized void sawBackends(List<Integer> pids) {
			Set<Integer> mine = new HashSet<>(pids);
			backends.addAll(mine);
			if (mine.size() > 1)
				moved++;
		}

		final Map<String, Integer> wrongs = new TreeMap<>();

		final Map<String, String> examples = new TreeMap<>();

		synchronized void wrong(List<String> wrong) {
			for (String w : wrong) {
				String key = w.substring(0, w.indexOf(':')).replaceAll(" \\(.*\\)", "")
				                 .replace(' ', '_');
				wrongs.merge(key, 1, Integer::sum);
				examples.putIfAbsent(key, w);
			}
		}

		synchronized void pattern(String p) {
			patterns.merge(p, 1, Integer::sum);
		}

		synchronized int finish() {
			if (!backends.isEmpty()) {
				if (MAX_BACKENDS > 0 && backends.size() > MAX_BACKENDS)
					errors.add("clients saw " + backends.size() +
					           " distinct backends, more than the pool's " + MAX_BACKENDS);
				if (EXPECT_MOVES && moved == 0)
					errors.add("no client's statements moved between backends");
			}
			for (Map.Entry<String, String> e : examples.entrySet())
				System.err.println("first wrong " + e.getKey() + ": " + e.getValue());
			StringBuilder facts = new StringBuilder("clients=" + clients);
			if (!backends.isEmpty())
				facts.append(" backends=").append(backends.size()).append(" moved=").append(moved);
			for (Map.Entry<String, String> n : notes.entrySet())
				facts.append(' ').append(n.getKey()).append('=').append(n.getValue());
			if (!wrongs.isEmpty()) {
				facts.append(" wrong=");
				String sep = "";
				for (Map.Entry<String, Integer> w : wrongs.entrySet()) {
					facts.append(sep).append(w.getKey()).append(':').append(w.getValue());
					sep = ",";
				}
			}
			if (!patterns.isEmpty()) {
				facts.append(" patterns=");
				String sep = "";
				for (Map.Entry<String, Integer> p : patterns.entrySet()) {
					facts.append(sep).append(p.getKey()).append(':').append(p.getValue());
					sep = ",";
				}
			}
			String head = "RESULT " + variant + " " + scenario + ": ";
			if (!errors.isEmpty()) {
				System.out.println(head + "FAIL (" + errors.size() + " errors; first: " +
				                   errors.get(0).replace('\n', ' ') + ") " + facts);
				return 1;
			}
			System.out.println(head + "ok (" + facts + ")");
			return 0;
		}
	}

	static String describe(Throwable e) {
		String state = e instanceof SQLException ? ((SQLException)e).getSQLState() : null;
		String msg = String.valueOf(e.getMessage()).split("\n")[0];
		return e.getClass().getSimpleName() + (state != null ? " [" + state + "]" : "") + ": " +
		    msg;
	}

	static Connection connect(Properties extra) throws SQLException {
		Properties p = new Properties();
		p.setProperty("user", env("PGUSER", "app"));
		p.setProperty("password", env("PGPASSWORD", ""));
		if (variant.equals("jdbc-threshold1"))
			p.setProperty("prepareThreshold", "1");
		if (extra != null)
			p.putAll(extra);
		String url = "jdbc:postgresql://" + env("PGHOST", "127.0.0.1") + ":" +
		             env("PGPORT", "5432") + "/" + env("PGDATABASE", "app");
		return DriverManager.getConnection(url, p);
	}

	static Properties props(String... kv) {
		Properties p = new Properties();
		for (int i = 0; i + 1 < kv.length; i += 2)
			p.setProperty(kv[i], kv[i + 1]);
		return p;
	}

	/* First row of a query with parameters, as objects. */
	static Object[] row(Connection c, String sql, Object... args) throws SQLException {
		try (PreparedStatement ps = c.prepareStatement(sql)) {
			for (int i = 0; i < args.length; i++)
				ps.setObject(i + 1, args[i]);
			try (ResultSet rs = ps.executeQuery()) {
				if (!rs.next())
					throw new SQLException("no row from " + sql);
				Object[] out = new Object[rs.getMetaData().getColumnCount()];
				for (int i = 0; i < out.length; i++)
					out[i] = rs.getObject(i + 1);
				return out;
			}
		}
	}

	static Object one(Connection c, String sql, Object... args) throws SQLException {
		return row(c, sql, args)[0];
	}

	static void update(Connection c, String sql, Object... args) throws SQLException {
		try (PreparedStatement ps = c.prepareStatement(sql)) {
			for (int i = 0; i < args.length; i++)
				ps.setObject(i + 1, args[i]);
			ps.executeUpdate();
		}
	}

	static void simple(Connection c, String sql) throws SQLException {
		try (Statement s = c.createStatement()) {
			s.execute(sql);
		}
	}

	interface Client {
		void run(int i) throws Exception;
	}

	static void runClients(int n, Client body) throws InterruptedException {
		List<Thread> threads = new ArrayList<>();
		for (int i = 0; i < n; i++) {
			final int id = i;
			Thread t = new Thread(() -> {
				try {
					body.run(id);
				} catch (Throwable e) {
					report.fail(id, e);
				}
			});
			t.setDaemon(true);
			threads.add(t);
			t.start();
		}
		for (Thread t : threads)
			t.join();
	}

	static void matrix() throws Exception {
		String items = table("items"), log = table("log");
		try (Connection s = connect(null)) {
			simple(s, "drop table if exists " + items + ", " + log);
			simple(s, "create table " + items + " (id int primary key, name text not null)");
			simple(s, "insert into " + items +
			              " select g, 'item-' || g from generate_series(1, 100) g");
			simple(s, "create table " + log + " (client int not null, it int not null)");
		}
		runClients(CLIENTS, i -> {
			try (Connection c = connect(props("ApplicationName", "drv-" + i))) {
				List<Integer> pids = new ArrayList<>();
				for (int it = 0; it < ITERATIONS; it++) {
					boolean inTx = it % 2 == 1;
					if (inTx)
						c.setAutoCommit(false);
					expect(one(c, "select ?::int + ?::int", it, i), it + i, "sum");
					int item = (i * 7 + it) % 100 + 1;
					Object[] r = row(c, "select id, name from " + items + " where id = ?", item);
					expect(r[0], item, "item id");
					expect(r[1], "item-" + item, "item name");
					pids.add((Integer)one(c, "select pg_backend_pid()"));
					if (inTx) {
						update(c, "insert into " + log + " (client, it) values (?, ?)", i, it);
						expect(one(c, "select count(*)::int from " + log +
						                  " where client = ? and it = ?", i, it),
						       1, "row inserted in the transaction");
						c.rollback();
						c.setAutoCommit(true);
					}
					expect(one(c, "select count(*)::int from " + log +
					                  " where client = ? and it = ?", i, it),
					       0, "row after rollback");
				}
				report.sawBackends(pids);
			}
		});
	}

	static void alter() throws Exception {
		String table = table("alter");
		String query = "select v from " + table + " where id = ?";
		Connection s = connect(null);
		simple(s, "drop table if exists " + table);
		simple(s, "create table " + table + " (id int primary key, v int not null)");
		simple(s, "insert into " + table + " values (1, 42), (2, 43)");
		CyclicBarrier before = new CyclicBarrier(CLIENTS + 1);
		CyclicBarrier after = new CyclicBarrier(CLIENTS + 1);
		Thread main = new Thread(() -> {
			try {
				before.await(120, TimeUnit.SECONDS);
				simple(s, "alter table " + table + " alter column v type text");
				after.await(120, TimeUnit.SECONDS);
			} catch (Exception e) {
				report.fail("main", e);
				before.reset();
				after.reset();
			}
		});
		main.start();
		runClients(CLIENTS, i -> {
			int key = i % 2 + 1;
			try (Connection c = connect(null)) {
				List<Integer> pids = new ArrayList<>();
				try {
					for (int it = 0; it < 10; it++) {
						c.setAutoCommit(it % 2 == 0);
						expect(one(c, query, key), 41 + key, "v before");
						pids.add((Integer)one(c, "select pg_backend_pid()"));
						if (it % 2 == 1)
							c.commit();
					}
					c.setAutoCommit(true);
					report.sawBackends(pids);
				} finally {
					before.await(120, TimeUnit.SECONDS);
				}
				after.await(120, TimeUnit.SECONDS);
				StringBuilder pattern = new StringBuilder();
				List<String> errors = new ArrayList<>();
				int attempts = 10;
				for (int it = 0; it < attempts; it++) {
					try {
						c.setAutoCommit(it % 2 == 0);
						try (PreparedStatement ps = c.prepareStatement(query)) {
							ps.setInt(1, key);
							try (ResultSet rs = ps.executeQuery()) {
								rs.next();
								expect(rs.getMetaData().getColumnTypeName(1), "text",
								       "type after ALTER");
								expect(rs.getObject(1), Integer.toString(41 + key),
								       "v after ALTER (now text)");
							}
						}
						if (it % 2 == 1)
							c.commit();
						pattern.append('.');
					} catch (SQLException e) {
						if (it % 2 == 1)
							c.rollback();
						errors.add(String.valueOf(e.getSQLState()));
						pattern.append('E');
						if (it == attempts - 1 && attempts == 10)
							attempts++;
						if (errors.size() == 1 && i < 3)
							System.err.println("client " + i + ": after ALTER: " + describe(e));
					}
				}
				c.setAutoCommit(true);
				report.pattern(pattern.toString());
				for (String e : errors)
					if (!e.equals("0A000"))
						throw new Check("after ALTER TABLE: errors other than 0A000: " + errors);
				if (STRICT && errors.size() > 1)
					throw new Check("after ALTER TABLE: " + errors.size() + " errors in " +
					                attempts + " executions, at most one allowed (executions: " +
					                pattern + ")");
			}
		});
		main.join();
		s.close();
	}

	static void syncWithPeers() throws Exception {
		String dir = System.getenv("DRIVER_SYNC_DIR");
		int count = envInt("DRIVER_SYNC_COUNT", 0);
		if (dir == null || count == 0)
			return;
		new File(dir, variant + ".ready").createNewFile();
		long deadline = System.nanoTime() + 120_000_000_000L;
		for (;;) {
			String[] ready = new File(dir).list((d, name) -> name.endsWith(".ready"));
			if (ready != null && ready.length >= count)
				return;
			if (System.nanoTime() > deadline)
				throw new Check("peer programs did not get ready within 120 s");
			Thread.sleep(50);
		}
	}

	static void session() throws Exception {
		String prefix = table("sess");
		String startupZone = TimeZone.getDefault().getID();
		try (Connection s = connect(null)) {
			for (int k = 0; k < 4; k++) {
				String schema = prefix + "_s" + k;
				simple(s, "drop schema if exists " + schema + " cascade");
				simple(s, "create schema " + schema);
				simple(s, "create table " + schema + ".marker (which text)");
				simple(s, "insert into " + schema + ".marker values ('" + schema + "')");
			}
		}
		Connection[] conns = new Connection[CLIENTS];
		CyclicBarrier connected = new CyclicBarrier(CLIENTS + 1);
		CyclicBarrier start = new CyclicBarrier(CLIENTS + 1);
		Thread main = new Thread(() -> {
			try {
				connected.await(120, TimeUnit.SECONDS);
				syncWithPeers();
				start.await(180, TimeUnit.SECONDS);
			} catch (Exception e) {
				report.fail("main", e);
				start.reset();
			}
		});
		main.start();
		runClients(CLIENTS, i -> {
			String app = variant + "-" + i;
			String timeout = i % 3 == 0 ? "12345ms" : "0";
			String schema = prefix + "_s" + (i % 4);
			String zone = i % 5 != 0 ? ZONES[i % 4] : startupZone;
			Connection c;
			try {
				Properties p = props("ApplicationName", app);
				if (i % 3 == 0)
					p.setProperty("options", "-c statement_timeout=12345");
				c = connect(p);
				c.setAutoCommit(i % 2 == 0);
				simple(c, "set search_path = " + schema + ", public");
				if (i % 5 != 0)
					simple(c, "set TimeZone = '" + zone + "'");
				if (i % 2 == 1)
					c.commit();
				c.setAutoCommit(true);
			} catch (Exception e) {
				connected.reset();
				throw e;
			}
			try (Connection cc = c) {
				connected.await(120, TimeUnit.SECONDS);
				start.await(180, TimeUnit.SECONDS);
				List<Integer> pids = new ArrayList<>();
				Check firstWrong = null;
				for (int it = 0; it < ITERATIONS; it++) {
					if (it == ITERATIONS / 2 && i % 2 == 0) {
						app = "renamed-" + variant + "-" + i;
						simple(c, "set application_name = '" + app + "'");
					}
					boolean inTx = it % 2 == 0;
					c.setAutoCommit(!inTx);
					List<String> wrong = new ArrayList<>();
					try {
						want(wrong, one(c, "show search_path"), schema + ", public", "search_path");
						want(wrong, one(c, "select current_setting(?)", "TimeZone"), zone,
						     "TimeZone");
						want(wrong, one(c, "select current_setting(?)", "application_name"), app,
						     "application_name");
						want(wrong, one(c, "show extra_float_digits"), "3",
						     "extra_float_digits (pgJDBC's startup value)");
						want(wrong, one(c, "show statement_timeout"), timeout,
						     "statement_timeout (from options)");
						pids.add((Integer)one(c, "select pg_backend_pid()"));
						/* Last: with the wrong search_path it fails the transaction. */
						try {
							want(wrong, one(c, "select which from marker"), schema,
							     "marker table through search_path");
						} catch (SQLException e) {
							wrong.add("marker table through search_path: got " + describe(e) +
							          ", want " + schema);
							throw e;
						}
						if (inTx)
							c.commit();
					} catch (SQLException e) {
						if (inTx)
							c.rollback();
						if (wrong.isEmpty())
							throw e;
					}
					if (!wrong.isEmpty()) {
						report.wrong(wrong);
						if (firstWrong == null) /* every iteration still runs */
							firstWrong = new Check(String.join("; ", wrong));
					}
				}
				c.setAutoCommit(true);
				report.sawBackends(pids);
				if (firstWrong != null)
					throw firstWrong;
			}
		});
		main.join();
		report.notes.put("startup_zone", startupZone);
	}

	static final int TXN_ROUNDS = 40;
	static final int NOTIFICATIONS = 50;
	static final String[] TXN_ZONES = {"Asia/Tokyo",   "Europe/Paris",    "America/Lima",
	                                   "Africa/Cairo", "Australia/Perth", "Asia/Kolkata",
	                                   "Europe/Oslo",  "Pacific/Auckland"};

	/* SET and set_config of a custom setting and TimeZone stay with their client. */
	static void txnSettings(int i) throws Exception {
		try (Connection c = connect(props("ApplicationName", "set-" + i))) {
			if (i % 2 == 0) {
				simple(c, "SET myapp.who = 'c" + i + "'");
				simple(c, "SET TimeZone = '" + TXN_ZONES[i] + "'");
			} else {
				row(c, "select set_config('myapp.who', ?, false), set_config('TimeZone', ?, false)",
				    "c" + i, TXN_ZONES[i]);
			}
			for (int r = 0; r < TXN_ROUNDS; r++) {
				c.setAutoCommit(false);
				Object[] got = row(c, "select current_setting('myapp.who', true), " +
				                          "current_setting('TimeZone')");
				expect(got[0] + "|" + got[1], "c" + i + "|" + TXN_ZONES[i], "own settings");
				c.commit();
				c.setAutoCommit(true);
			}
		}
	}

	/* A client that sets nothing never sees anyone's custom setting. */
	static void txnClean() throws Exception {
		try (Connection c = connect(props("ApplicationName", "clean"))) {
			Object zone = one(c, "select current_setting('TimeZone')");
			for (int r = 0; r < TXN_ROUNDS * 2; r++) {
				Object[] got = row(c, "select coalesce(current_setting('myapp.who', true), ''), " +
				                          "current_setting('TimeZone')");
				expect(got[0] + "|" + got[1], "|" + zone, "no other client's settings");
			}
		}
	}

	/* SQL PREPARE/EXECUTE, the same name in 8 clients.  EXECUTE goes through a
	 * plain Statement (an unnamed Parse) and through one PreparedStatement kept
	 * open, server-prepared past prepareThreshold (a named Parse of "EXECUTE
	 * q(1)", the same text in every client).  PREPARE and DEALLOCATE go
	 * through the extended protocol too (an unnamed Parse), which sluice
	 * tracks: through it (DRIVER_STRICT) no server has a statement named q,
	 * as a pinned client's server would (docs/session-state.md). */
	static void txnPrepare(int i) throws Exception {
		try (Connection c = connect(props("ApplicationName", "prep-" + i))) {
			simple(c, "PREPARE q(int) AS SELECT $1 * " + (i + 1));
			if (STRICT)
				expect(one(c, "select count(*)::int from pg_prepared_statements where name = 'q'"), 0,
				       "q is sluice's, not pinned");
			try (PreparedStatement again = c.prepareStatement("EXECUTE q(1)")) {
				for (int it = 0; it < TXN_ROUNDS; it++) {
					try (Statement st = c.createStatement();
					     ResultSet rs = st.executeQuery("EXECUTE q(" + it + ")")) {
						if (!rs.next())
							throw new Check("no row from EXECUTE q");
						expect(rs.getObject(1), it * (i + 1), "own statement");
					}
					try (ResultSet rs = again.executeQuery()) {
						if (!rs.next())
							throw new Check("no row from EXECUTE q(1)");
						expect(rs.getObject(1), i + 1, "own statement, prepared");
					}
				}
			}
			simple(c, "DEALLOCATE q");
		}
	}

	/* A session advisory lock held across transactions keeps its backend. */
	static void txnLock() throws Exception {
		try (Connection c = connect(props("ApplicationName", "lock"));
		     Connection other = connect(props("ApplicationName", "lock-2"))) {
			one(c, "select pg_advisory_lock(917)");
			Object pid = one(c, "select pg_backend_pid()");
			for (int r = 0; r < TXN_ROUNDS; r++) {
				expect(one(c, "select pg_backend_pid()"), pid, "pinned backend");
				expect(one(other, "select pg_try_advisory_lock(917)"), false, "lock still held");
			}
			one(c, "select pg_advisory_unlock(917)");
			expect(one(other, "select pg_try_advisory_lock(917)"), true, "lock released");
			one(other, "select pg_advisory_unlock_all()");
		}
	}

	/* LISTEN in one connection, NOTIFY from another: every notification arrives
	 * (pgJDBC's getNotifications(timeout) waits on the socket). */
	static void txnListen() throws Exception {
		try (Connection listener = connect(props("ApplicationName", "listener"));
		     Connection sender = connect(props("ApplicationName", "sender"))) {
			simple(listener, "LISTEN drv_chan");
			/* Through sluice the listener's backend LISTENs on nothing: not pinned. */
			if (STRICT)
				expect(one(listener, "select count(*) from pg_listening_channels()"), 0L,
				       "channels the listener's backend LISTENs on (pinned?)");
			for (int n = 0; n < NOTIFICATIONS; n++) {
				if (n % 2 == 0)
					simple(sender, "NOTIFY drv_chan, '" + n + "'");
				else
					one(sender, "select pg_notify('drv_chan', ?)", Integer.toString(n));
			}
			List<String> got = new ArrayList<>();
			PGConnection pg = listener.unwrap(PGConnection.class);
			long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
			while (got.size() < NOTIFICATIONS && System.nanoTime() < deadline) {
				PGNotification[] ns = pg.getNotifications(1000);
				if (ns != null)
					for (PGNotification n : ns)
						got.add(n.getParameter());
			}
			List<String> want = new ArrayList<>();
			for (int n = 0; n < NOTIFICATIONS; n++)
				want.add(Integer.toString(n));
			expect(got, want, "notifications in order");
		}
	}

	static void txnstate() throws Exception {
		AtomicBoolean stop = new AtomicBoolean();
		List<Thread> churners = new ArrayList<>();
		for (int i = 0; i < 4; i++) {
			final int id = i;
			Thread t = new Thread(() -> {
				try (Connection c = connect(props("ApplicationName", "churn-" + id))) {
					while (!stop.get())
						one(c, "select 1");
				} catch (Throwable e) {
					report.fail("churn-" + id, e);
				}
			});
			t.setDaemon(true);
			churners.add(t);
			t.start();
		}
		runClients(19, k -> {
			if (k == 0)
				txnListen();
			else if (k == 1)
				txnClean();
			else if (k == 2)
				txnLock();
			else if (k < 11)
				txnSettings(k - 3);
			else
				txnPrepare(k - 11);
		});
		stop.set(true);
		for (Thread t : churners)
			t.join();
		report.clients = 23;
	}

	public static void main(String[] args) throws Exception {
		if (args.length != 2 ||
		    !(args[0].equals("jdbc-threshold1") || args[0].equals("jdbc-default")) ||
		    !(args[1].equals("matrix") || args[1].equals("alter") || args[1].equals("session") ||
		      args[1].equals("txnstate"))) {
			System.err.println("usage: JdbcDriver jdbc-threshold1|jdbc-default " +
			                   "matrix|alter|session|txnstate");
			System.exit(2);
		}
		variant = args[0];
		scenario = args[1];
		report.notes.put("pgjdbc", org.postgresql.util.DriverInfo.DRIVER_VERSION);
		try {
			switch (scenario) {
			case "matrix":
				matrix();
				break;
			case "alter":
				alter();
				break;
			case "txnstate":
				txnstate();
				break;
			default:
				session();
			}
		} catch (Throwable e) {
			report.fail("main", e);
		}
		System.exit(report.finish());
	}
}
